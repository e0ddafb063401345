"""LangChain tools whose calls are recorded, however they were declared.

``as_langchain_tool`` turns a ``tools.py`` function into a LangChain tool
that notes the model's call id for the engine before running as usual
(LangGraph's ``ToolNode`` invokes a tool with the model's tool call, its id
included); a ``@durable_tool`` function records its own calls.

``durable_tool_node`` is LangGraph's ``ToolNode`` with every other tool's
calls (a tool declared with LangChain's ``@tool``, an MCP tool) going
through the engine's record-or-serve step, under the model's call id. A
call of a tool that needs approval first pauses the graph with LangGraph's
``interrupt()``; it goes on (run, or told it was not approved) when the
graph is resumed with the answer (``checkpoints.py``). ``route_tool_calls``
sends each of the model's calls to that node as a task of its own (LangGraph's
``Send``), so calls made in parallel each pause on their own interrupt, are
asked together, and finished ones are not run again when the graph resumes.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph import END
from langgraph.prebuilt import ToolNode
from langgraph.types import Send, interrupt

from agent_server.long_running.journal.approvals import AGENT_LABEL
from agent_server.long_running.journal.steps import current_steps
from agent_server.long_running.tools.tool_calls import run_recorded, sdk_call_id

from ..common.always_run import is_always_run
from ..common.approval import asks_approval, not_approved

#: The key of an approval request in an interrupt's value (``checkpoints.py`` reads it).
APPROVAL = "approval_request"


class _CallIdTool(StructuredTool):
    async def ainvoke(self, input: Any, config=None, **kwargs: Any) -> Any:
        with sdk_call_id(_call_id(input)):
            return await super().ainvoke(input, config, **kwargs)

    def invoke(self, input: Any, config=None, **kwargs: Any) -> Any:
        with sdk_call_id(_call_id(input)):
            return super().invoke(input, config, **kwargs)


def _call_id(input: Any) -> str | None:
    if isinstance(input, dict) and input.get("type") == "tool_call":
        return input.get("id")
    return None


def as_langchain_tool(function) -> StructuredTool:
    """``StructuredTool.from_function`` (async tools need ``coroutine=``, sync ones ``func=``)."""
    if inspect.iscoroutinefunction(function):
        return _CallIdTool.from_function(coroutine=function)
    return _CallIdTool.from_function(func=function)


def _records_its_calls(tool: BaseTool) -> bool:
    """A tool whose function is a ``@durable_tool`` (which has ``always_run``)."""
    function = getattr(tool, "coroutine", None) or getattr(tool, "func", None)
    return hasattr(function, "always_run")


def _recordable(result: Any) -> Any:
    """What is stored of a tool's result: a ``ToolMessage``'s content (a ``Command`` cannot be)."""
    return result.content if isinstance(result, ToolMessage) else None


def _approval(tool: BaseTool, call: dict[str, Any]) -> dict[str, Any] | None:
    """Pause for a person's answer; the answer once resumed (None: outside a stored run, no pause)."""
    if current_steps() is None:
        return None
    return interrupt({APPROVAL: {
        "name": call["name"], "arguments": json.dumps(call.get("args") or {}), "call_id": call["id"],
        "server_label": (getattr(tool, "metadata", None) or {}).get("mcp_server") or AGENT_LABEL}})


def durable_tool_node(tools: Sequence[BaseTool | Callable], *, always_run: Collection[str] = (),
                      needs_approval: Collection[str] = (), **kwargs: Any) -> ToolNode:
    """``ToolNode(tools)`` whose tools' finished calls are recorded and served to a resumed attempt,
    and whose calls of tools that need approval wait for one (``needs_approval`` names MCP tools)."""

    async def record(request, execute: Callable[[Any], Awaitable[Any]]) -> Any:
        tool, call = request.tool, request.tool_call
        if tool is not None and asks_approval(tool, needs_approval):
            answer = _approval(tool, call)
            if answer is None or not answer.get("approve"):
                text = (not_approved(answer.get("status", "rejected"), answer.get("reason")) if answer
                        else not_approved("unstored", None, call["name"]))
                return ToolMessage(content=text, tool_call_id=call["id"], name=call["name"], status="error")
        if tool is None or _records_its_calls(tool):
            return await execute(request)

        def rebuild(output: Any) -> ToolMessage:
            return ToolMessage(content=output, tool_call_id=call["id"], name=call["name"])

        return await run_recorded(call["name"], call.get("args") or {}, lambda: execute(request),
                                  call_id=call.get("id"), always_run=is_always_run(tool, always_run),
                                  recordable=_recordable, rebuild=rebuild)

    return ToolNode(tools, awrap_tool_call=record, **kwargs)


def route_tool_calls(state: dict[str, Any], node: str = "tools") -> str | list[Send]:
    """After the model: ``END`` when it answered, else one ``node`` task per tool call it made (the
    ``ToolNode`` input LangGraph's own agents send for this)."""
    calls = getattr(state["messages"][-1], "tool_calls", None)
    if not calls:
        return END
    return [Send(node, {"__type": "tool_call_with_context", "tool_call": call, "state": state}) for call in calls]
