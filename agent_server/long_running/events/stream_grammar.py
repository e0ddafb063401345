"""OpenAI's stream grammar, guaranteed whatever a handler yields.

Handlers yield anything from MLflow's minimal events (text deltas with an
``item_id``, then ``response.output_item.done``) to an SDK's raw events. The
official clients' stream accumulators need the whole grammar: every item
announced by ``response.output_item.added`` at its ``output_index``; for a
message, ``response.content_part.added``, the deltas, ``output_text.done`` and
``content_part.done``; then ``response.output_item.done``. ``StreamGrammar``
fills in what a handler left out, numbers items, and gives each item that
has no id of its own (none, or the response id that ``replace_fake_id``
puts in place of an SDK placeholder) a fresh ``msg_``/``fc_``/``fco_`` id.

Lifecycle events (``response.created``, ``response.completed``, ...) belong
to the server: a handler's are dropped, so a handler cannot end a run early
or show a client another response id.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

_LIFECYCLE = frozenset({
    "response.created", "response.queued", "response.in_progress", "response.completed",
    "response.failed", "response.cancelled", "response.incomplete",
})
# Item types whose OpenAI schema requires a status (MLflow's helpers may leave it out).
_NEEDS_STATUS = frozenset({"message", "function_call", "function_call_output"})
_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


@dataclass
class _OpenItem:
    item_id: str
    output_index: int
    type: str
    skeleton: dict[str, Any]
    # content_index -> the text so far, as chunks: joining once at the end keeps a long
    # message linear (appending to one growing string copied it at every delta).
    text: dict[int, list[str]] = field(default_factory=dict)
    parts_closed: set[int] = field(default_factory=set)
    arguments: str = ""

    def text_of(self, content_index: int) -> str:
        chunks = self.text[content_index]
        if len(chunks) > 1:
            chunks[:] = ["".join(chunks)]
        return chunks[0] if chunks else ""


def _new_id(item_type: str) -> str:
    return f"{_ID_PREFIX.get(item_type, 'item')}_{uuid.uuid4().hex}"


def _skeleton(item: dict[str, Any]) -> dict[str, Any]:
    """What ``response.output_item.added`` announces: the item before its content arrives."""
    if item["type"] == "message":
        return {"type": "message", "id": item["id"], "role": item.get("role", "assistant"),
                "status": "in_progress", "content": []}
    if item["type"] == "function_call":
        return {"type": "function_call", "id": item["id"], "call_id": item.get("call_id", ""),
                "name": item.get("name", ""), "arguments": "", "status": "in_progress"}
    skeleton = copy.deepcopy(item)
    if "status" in skeleton or item["type"] in _NEEDS_STATUS:
        skeleton["status"] = "in_progress"
    return skeleton


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


class StreamGrammar:
    """Normalises one attempt's handler events; ``feed`` returns the events to store, in order."""

    def __init__(self, response_id: str, first_output_index: int = 0):
        self.response_id = response_id
        self._next_index = first_output_index
        self._open: dict[str, _OpenItem] = {}  # by the handler's key for the item

    def _key(self, item_id: Any) -> str:
        return item_id if isinstance(item_id, str) and item_id else self.response_id

    def _real_id(self, handler_id: Any, item_type: str) -> str:
        if isinstance(handler_id, str) and handler_id and handler_id != self.response_id:
            return handler_id
        return _new_id(item_type)

    def _open_item(self, key: str, item: dict[str, Any], out: list[dict]) -> _OpenItem:
        item = {**item, "id": self._real_id(item.get("id"), item["type"])}
        opened = _OpenItem(item["id"], self._next_index, item["type"], _skeleton(item))
        self._next_index += 1
        self._open[key] = opened
        out.append({"type": "response.output_item.added", "output_index": opened.output_index,
                    "item": copy.deepcopy(opened.skeleton)})
        return opened

    def _open_part(self, item: _OpenItem, content_index: int, out: list[dict]) -> None:
        if content_index not in item.text:
            item.text[content_index] = []
            out.append({"type": "response.content_part.added", "item_id": item.item_id,
                        "output_index": item.output_index, "content_index": content_index,
                        "part": _text_part("")})

    def _close_parts(self, item: _OpenItem, out: list[dict]) -> None:
        for content_index in sorted(item.text):
            if content_index in item.parts_closed:
                continue
            item.parts_closed.add(content_index)
            text = item.text_of(content_index)
            out.append({"type": "response.output_text.done", "item_id": item.item_id,
                        "output_index": item.output_index, "content_index": content_index, "text": text,
                        "logprobs": []})
            out.append({"type": "response.content_part.done", "item_id": item.item_id,
                        "output_index": item.output_index, "content_index": content_index,
                        "part": _text_part(text)})

    def _finished_item(self, item: _OpenItem, status: str) -> dict[str, Any]:
        """The item as streamed so far (for items the handler never completed itself)."""
        done = copy.deepcopy(item.skeleton)
        done["status"] = status
        if item.type == "message":
            done["content"] = [_text_part(item.text_of(index)) for index in sorted(item.text)]
        elif item.type == "function_call":
            done["arguments"] = item.arguments
        return done

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        event_type = event.get("type")
        if event_type in _LIFECYCLE:
            return []
        out: list[dict[str, Any]] = []
        if event_type == "response.output_item.added" and isinstance(event.get("item"), dict):
            item = event["item"]
            key = self._key(item.get("id"))
            if key not in self._open:
                self._open_item(key, item, out)
            return out
        if event_type == "response.output_item.done" and isinstance(event.get("item"), dict):
            return self._item_done(event, out)
        if event_type in ("response.output_text.delta", "response.output_text.done",
                          "response.content_part.added", "response.content_part.done"):
            return self._text_event(event, out)
        if event_type in ("response.function_call_arguments.delta", "response.function_call_arguments.done"):
            key = self._key(event.get("item_id"))
            opened = self._open.get(key)
            if opened is None or opened.type != "function_call":
                opened = self._open_item(key, {"type": "function_call", "id": event.get("item_id")}, out)
            if event_type.endswith(".delta"):
                opened.arguments += event.get("delta") or ""
            else:
                opened.arguments = event.get("arguments", opened.arguments)
            out.append({**event, "item_id": opened.item_id, "output_index": opened.output_index})
            return out
        out.append(event)  # anything else (errors, custom events) passes unchanged
        return out

    def _text_event(self, event: dict[str, Any], out: list[dict]) -> list[dict]:
        key = self._key(event.get("item_id"))
        opened = self._open.get(key)
        if opened is None or opened.type != "message":
            opened = self._open_item(key, {"type": "message", "id": event.get("item_id")}, out)
        content_index = event.get("content_index")
        content_index = content_index if isinstance(content_index, int) and content_index >= 0 else 0
        event_type = event["type"]
        if event_type == "response.content_part.added":
            self._open_part(opened, content_index, out)
            return out
        self._open_part(opened, content_index, out)
        if event_type == "response.output_text.delta":
            opened.text[content_index].append(event.get("delta") or "")
            out.append({**event, "item_id": opened.item_id, "output_index": opened.output_index,
                        "content_index": content_index, "logprobs": event.get("logprobs") or []})
        elif event_type == "response.output_text.done" and isinstance(event.get("text"), str):
            opened.text[content_index] = [event["text"]]  # its done events go out at the item's end
        return out

    def _item_done(self, event: dict[str, Any], out: list[dict]) -> list[dict]:
        item = event["item"]
        item_type = item.get("type")
        key = self._key(item.get("id"))
        opened = self._open.get(key)
        if opened is None or opened.type != item_type:
            opened = self._open_item(key, item, out)
        item = {**item, "id": opened.item_id}
        if item_type in _NEEDS_STATUS:
            item.setdefault("status", "completed")
        if item_type == "message":
            # Deltas the handler streamed and the text of its final item must tell one story:
            # stream the final text's parts the deltas did not announce.
            for content_index, part in enumerate(item.get("content") or []):
                if isinstance(part, dict) and part.get("type") == "output_text" and content_index not in opened.text:
                    self._open_part(opened, content_index, out)
                    text = part.get("text") or ""
                    if text:
                        out.append({"type": "response.output_text.delta", "item_id": opened.item_id,
                                    "output_index": opened.output_index, "content_index": content_index,
                                    "delta": text, "logprobs": []})
                    opened.text[content_index] = [text]
                elif isinstance(part, dict) and isinstance(part.get("text"), str):
                    opened.text[content_index] = [part["text"]]
            self._close_parts(opened, out)
        del self._open[key]
        out.append({**event, "output_index": opened.output_index, "item": item})
        return out

    def close_open(self, status: str = "completed") -> list[dict[str, Any]]:
        """Complete the items the handler left open (deltas without a final item)."""
        out: list[dict[str, Any]] = []
        for key, opened in list(self._open.items()):
            if opened.type == "message":
                self._close_parts(opened, out)
            del self._open[key]
            out.append({"type": "response.output_item.done", "output_index": opened.output_index,
                        "item": self._finished_item(opened, status)})
        return out


@dataclass(frozen=True)
class Seam:
    """Where a resumed attempt takes over the log."""

    closing_events: list[dict[str, Any]]  # close what the earlier attempts left open (status incomplete)
    next_output_index: int


def seam_after(prior_events: list[str], response_id: str) -> Seam:
    """Read the earlier attempts' events: which items they left open, which indices they used."""
    grammar = StreamGrammar(response_id)
    next_index = 0
    for data in prior_events:
        event = json.loads(data)
        index = event.get("output_index")
        if isinstance(index, int):
            next_index = max(next_index, index + 1)
        event_type = event.get("type")
        if event_type == "response.output_item.added" and isinstance(event.get("item"), dict):
            item = event["item"]
            grammar._open[item["id"]] = _OpenItem(item["id"], index, item.get("type", ""), item)
        elif event_type == "response.output_item.done" and isinstance(event.get("item"), dict):
            grammar._open.pop(event["item"].get("id"), None)
        elif event_type == "response.content_part.added" and event.get("item_id") in grammar._open:
            grammar._open[event["item_id"]].text.setdefault(event.get("content_index", 0), [])
        elif event_type == "response.output_text.delta" and event.get("item_id") in grammar._open:
            opened = grammar._open[event["item_id"]]
            content_index = event.get("content_index", 0)
            opened.text.setdefault(content_index, []).append(event.get("delta") or "")
        elif event_type in ("response.output_text.done", "response.content_part.done") \
                and event.get("item_id") in grammar._open:
            grammar._open[event["item_id"]].parts_closed.add(event.get("content_index", 0))
        elif event_type == "response.function_call_arguments.delta" and event.get("item_id") in grammar._open:
            grammar._open[event["item_id"]].arguments += event.get("delta") or ""
    return Seam(grammar.close_open(status="incomplete"), next_index)
