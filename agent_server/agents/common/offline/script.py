"""What the offline model says next, decided from the conversation by fixed rules.

Both SDK adapters translate their messages into :class:`Turn` objects, ask
:func:`plan_reply`, and translate the answer back. The rules:

- right after a tool result: answer with that result;
- asked to use a tool by name ("use the add tool with {"a": 2, "b": 3}"):
  call it, with the JSON object in the message as its arguments (none without
  one); this is how MCP tools, whose names the script cannot know, get called;
- asked about the time (and ``get_current_time`` is available): call it;
- asked to research something (and ``research`` is available): call it, with
  the topic and the seconds from the request ("research tides for 5 seconds");
- asked to email someone ("Email ada@example.com about the launch", and
  ``send_email`` is available): call it, with that address and topic;
- a ``[RECOVERY]`` message (the server resumed the run after a crash): start
  over from the user's last request before it, as a naive model would. The
  tools it calls again that had finished are served from the server's record
  rather than run twice; that is the point of showing it;
- memory, from the earlier turns of the conversation: "My name is Ada."
  is acknowledged; "What is my name?" answers with the name the user gave;
  "What did I say before?" quotes the user's previous message;
- long-term memory, across conversations (with the memory tools available):
  "Remember that my favourite colour is teal" calls ``save_memory`` with the
  fact (this rule comes before the research and time rules: a fact may
  mention either); "What is my favourite colour?" (any "what is/are my ...?" but the
  name, "do you remember ...?", "what do you know about me?") calls
  ``search_memories`` with the question (with no query for "what do you
  know about me?"), and the answer quotes what it found;
- anything else: a fixed reply that says this is the offline model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

_SECONDS = re.compile(r"\b(?:for\s+)?(\d+(?:\.\d+)?)\s*(?:s|sec|secs|second|seconds)\b", re.IGNORECASE)
_RESEARCH = re.compile(r"\bresearch(?:ing)?\b(?:\s+(?:on|about|into|the topic(?: of)?))?\s*(?P<topic>.*)", re.IGNORECASE | re.DOTALL)
_NAMED_TOOL = re.compile(
    r"\b(?:use|call|run)\s+(?:the\s+)?[`'\"]?(?P<name>[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)", re.IGNORECASE
)
_MY_NAME_IS = re.compile(r"\bmy name is\s+(?P<name>[^.!?\n]+)", re.IGNORECASE)
_ASK_NAME = re.compile(r"\b(?:what(?:'s| is)\s+my name|do you (?:know|remember) my name|who am i)\b", re.IGNORECASE)
_ASK_BEFORE = re.compile(r"\bwhat did i (?:just )?(?:say|write|ask)\b|\bmy (?:previous|last) message\b",
                         re.IGNORECASE)
_REMEMBER = re.compile(r"^\W*(?:please\s+)?remember(?:\s+that)?\b[\s:,]*(?P<fact>\S.*)", re.IGNORECASE | re.DOTALL)
_RECALL = re.compile(r"\bwhat(?:'s|\s+is|\s+are|\s+was|\s+were)\s+my\b|\bdo you (?:still )?remember\b"
                     r"|(?P<everything>\bwhat do you (?:know|remember) about me\b)", re.IGNORECASE)
_EMAIL = re.compile(r"\b(?:e-?mail|write to)\s+(?P<to>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)(?:\s+about\s+(?P<topic>[^.!?\n]+))?",
                    re.IGNORECASE)
_TIME = re.compile(r"\b(time|clock|what day|date today|today's date)\b", re.IGNORECASE)
#: The tools of ``agents/tools.py`` the rules know by name (the fallback lists only the others).
_BUILT_IN_TOOLS = ("get_current_time", "research", "send_email", "save_memory", "search_memories", "delete_memory")
#: How the server's resumed-attempt message starts (agent_server/long_running/runs/recovery.py).
RECOVERY_PREFIX = "[RECOVERY]"


@dataclass(frozen=True)
class Turn:
    """One conversation entry: user text, assistant text, or a tool's result."""

    role: Literal["user", "assistant", "tool"]
    text: str = ""
    tool_name: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """Call ``name`` with ``arguments``."""

    name: str
    arguments: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TextReply:
    """Answer with ``text``."""

    text: str


Plan = ToolCall | TextReply


def plan_reply(turns: list[Turn], tool_names: list[str]) -> Plan:
    """The offline model's next step for this conversation."""
    last = turns[-1] if turns else Turn("user", "")
    if last.role == "user" and last.text.startswith(RECOVERY_PREFIX):
        # Its text quotes tool names and arguments; the request to act on is the user's own.
        last = next((t for t in reversed(turns) if t.role == "user" and not t.text.startswith(RECOVERY_PREFIX)),
                    Turn("user", ""))
    if last.role == "tool":
        return TextReply(_answer_from_tool(last))
    if last.role == "user":
        text = last.text
        named = _named_tool(text, tool_names)
        if named:
            return named
        fact = _REMEMBER.match(text)
        if fact and "save_memory" in tool_names:  # before the rules below: a fact may mention research or time
            return ToolCall("save_memory", {"text": fact["fact"].strip().rstrip(".!")})
        email = _EMAIL.search(text)
        if email and "send_email" in tool_names:
            topic = (email["topic"] or "your message").strip()
            return ToolCall("send_email", {"to": email["to"], "subject": topic[:1].upper() + topic[1:],
                                           "body": f"Hello, a note about {topic}."})
        research = _RESEARCH.search(text)
        if research and "research" in tool_names:
            return ToolCall("research", _research_arguments(research["topic"]))
        if _TIME.search(text) and "get_current_time" in tool_names:
            return ToolCall("get_current_time", {})
        remembered = _from_memory(text, [turn.text for turn in turns[:-1] if turn.role == "user"])
        if remembered:
            return TextReply(remembered)
        recall = _RECALL.search(text)
        if recall and "search_memories" in tool_names:
            # "What do you know about me?" asks for everything: an empty query lists the newest memories.
            return ToolCall("search_memories", {"query": "" if recall["everything"] else text})
    return TextReply(_fallback(last.text, tool_names))


def _from_memory(text: str, earlier: list[str]) -> str | None:
    """A reply that shows the model got the conversation's earlier user messages (oldest first)."""
    if _ASK_BEFORE.search(text):
        if not earlier:
            return "This is the first message of our conversation: you have not said anything before it."
        return f'Before this, you said: "{" ".join(earlier[-1].split())}"'
    if _ASK_NAME.search(text):
        names = [m["name"].strip() for said in earlier for m in _MY_NAME_IS.finditer(said)]
        if not names:
            return "You have not told me your name in this conversation."
        return f"Your name is {names[-1]}."
    told = _MY_NAME_IS.search(text)
    if told:
        return f"Nice to meet you, {told['name'].strip()}! I will remember your name for this conversation."
    return None


def _named_tool(text: str, tool_names: list[str]) -> Plan | None:
    """A call of the tool the user names, if they name an available one."""
    name = next((m["name"] for m in _NAMED_TOOL.finditer(text) if m["name"] in tool_names), None)
    if name is None:
        return None
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end < start:
        return ToolCall(name, {})
    try:
        arguments = json.loads(text[start:end + 1])
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        return TextReply(f"To call {name}, give its arguments as one JSON object, "
                         f'e.g. "use the {name} tool with {{"key": "value"}}".')
    return ToolCall(name, arguments)


def _research_arguments(rest: str) -> dict:
    arguments: dict = {}
    seconds = _SECONDS.search(rest)
    if seconds:
        arguments["seconds"] = float(seconds.group(1))
        rest = rest[: seconds.start()] + rest[seconds.end():]
    topic = rest.strip(" \t\n.?!,;:")
    arguments["topic"] = topic or "the requested topic"
    return arguments


def _answer_from_tool(turn: Turn) -> str:
    if turn.tool_name == "get_current_time":
        return f"The current time is {turn.text} (UTC), according to the get_current_time tool."
    if turn.tool_name == "research":
        return f"Here is what the research tool reported: {turn.text}"
    if turn.tool_name == "save_memory":
        return f"I will remember that in our future conversations too. ({turn.text})"
    if turn.tool_name == "search_memories":
        return f"Here is what I remember from our earlier conversations: {turn.text}"
    if turn.tool_name == "send_email":
        if turn.text.startswith("This call was not made"):
            return f"I did not send the email. {turn.text}"
        return f"Done: {turn.text}"
    return f"The {turn.tool_name or 'tool'} tool returned: {turn.text}"


def _fallback(text: str, tool_names: list[str]) -> str:
    snippet = " ".join(text.split())[:80]
    examples = []
    if "get_current_time" in tool_names:
        examples.append('"What time is it?"')
    if "research" in tool_names:
        examples.append('"Research tide pools for 5 seconds"')
    if "send_email" in tool_names:
        examples.append('"Email ada@example.com about the launch"')
    if "save_memory" in tool_names:
        examples.append('"Remember that my favourite colour is teal"')
    if others := [name for name in tool_names if name not in _BUILT_IN_TOOLS]:
        examples.append(f'"Use the {others[0]} tool with {{...JSON arguments...}}" (tools: {", ".join(others)})')
    hint = f" Try {' or '.join(examples)} to see a tool call." if examples else ""
    heard = f' You wrote: "{snippet}".' if snippet else ""
    return (
        "Hello! I am the offline demo model, not an LLM: no model serving endpoint is configured, "
        f"so I answer from a fixed script.{heard}{hint} Set LLM_ENDPOINT_NAME and Databricks auth to use a real model."
    )


def split_tokens(text: str) -> list[str]:
    """``text`` cut into word-sized tokens that join back to exactly ``text``."""
    return re.findall(r"\s*\S+|\s+$", text) or [text]
