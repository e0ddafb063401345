"""The output items earlier attempts logged, which a handler that resumes at the step repeats.

A resumed attempt replays its run up to where the last one stopped, and an
SDK adapter may emit the items of the replayed steps again (a replayed model
call's tool call, a served tool's output, the messages of a graph restored
from its checkpoint). The log already has them: each one that comes in the
same order as logged is dropped, so a client reading the stream from the
start sees every item once. The first event that is not such a repeat (a
live model call's first token, an item the log lacks) ends the matching,
and everything from there on is stored.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

# Fields that differ between attempts for the same item (ids are assigned per attempt).
_VOLATILE = ("id", "status")


def completed_items(events: Iterable[str]) -> list[dict[str, Any]]:
    """The items of ``response.output_item.done`` events (stored JSON), except those closed
    ``incomplete`` because their attempt died while they streamed."""
    items = []
    for data in events:
        event = json.loads(data)
        item = event.get("item")
        if event.get("type") == "response.output_item.done" and isinstance(item, dict) \
                and item.get("status") != "incomplete":
            items.append(item)
    return items


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content or () if isinstance(part, dict))


def same_item(logged: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``new`` is ``logged`` again: tool calls and outputs by call id, messages by text."""
    kind = new.get("type")
    if logged.get("type") != kind:
        return False
    if kind in ("function_call", "function_call_output"):
        return logged.get("call_id") == new.get("call_id")
    if kind == "message":
        return logged.get("role", "assistant") == new.get("role", "assistant") and _text(logged) == _text(new)
    return ({k: v for k, v in logged.items() if k not in _VOLATILE}
            == {k: v for k, v in new.items() if k not in _VOLATILE})


class LoggedItems:
    """Drops a resumed handler's events that repeat logged items, in the order they were logged."""

    def __init__(self, logged: Sequence[dict[str, Any]]):
        self._expected = deque(logged)
        self.dropped = 0

    def repeats(self, event: dict[str, Any]) -> bool:
        """True if ``event`` repeats the next logged item (drop it); False once anything new comes."""
        if not self._expected:
            return False
        item = event.get("item")
        if event.get("type") == "response.output_item.done" and isinstance(item, dict) \
                and same_item(self._expected[0], item):
            self._expected.popleft()
            self.dropped += 1
            return True
        self._expected.clear()  # the run goes on past what was logged: store everything now
        return False
