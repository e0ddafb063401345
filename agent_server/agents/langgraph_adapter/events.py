"""LangGraph ``astream(stream_mode=["updates", "messages"])`` -> Responses stream events.

``messages`` mode gives the model's tokens (text deltas); ``updates`` mode
gives each node's finished messages (output items). One model answer keeps
one item id from its first token to its ``output_item.done``; ids carry the
``resp_placeholder_`` prefix, which the server swaps for the real response id
(see ``replace_fake_id``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage
from mlflow.types.responses import (
    create_function_call_item,
    create_function_call_output_item,
    create_text_delta,
    create_text_output_item,
)

from agent_server.utils import PLACEHOLDER_PREFIX

from ..common.message_text import text_of


class _ItemIds:
    """Placeholder item ids, stable between a message's deltas and its final item."""

    def __init__(self) -> None:
        self._by_message: dict[str, str] = {}
        self._streaming: str | None = None  # id of the message whose tokens came last
        self._count = 0

    def new(self) -> str:
        self._count += 1
        return f"{PLACEHOLDER_PREFIX}item_{self._count}"

    def for_chunk(self, message_id: str | None) -> str:
        key = message_id or ""
        if key not in self._by_message:
            self._by_message[key] = self.new()
        self._streaming = self._by_message[key]
        return self._streaming

    def for_message(self, message_id: str | None) -> str:
        # Providers may rename a message between its chunks and the final
        # message; then the tokens streamed last belong to it.
        item_id = self._by_message.get(message_id or "") or self._streaming or self.new()
        self._streaming = None
        return item_id


def _items(message: Any, ids: _ItemIds) -> list[dict]:
    if isinstance(message, AIMessage):
        items = []
        item_id = ids.for_message(message.id)
        if text := text_of(message.content):
            items.append(create_text_output_item(text=text, id=item_id))
        for call in message.tool_calls:
            items.append(create_function_call_item(
                id=f"{PLACEHOLDER_PREFIX}{call['id']}", call_id=call["id"], name=call["name"],
                arguments=json.dumps(call["args"]),
            ))
        return items
    if isinstance(message, ToolMessage):
        output = message.content if isinstance(message.content, str) else json.dumps(message.content, default=str)
        return [create_function_call_output_item(call_id=message.tool_call_id, output=output)]
    return []


async def responses_events(astream: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[dict]:
    """Convert a multi-mode LangGraph stream into Responses event dicts."""
    ids = _ItemIds()
    async for mode, payload in astream:
        if mode == "messages":
            chunk, _metadata = payload
            if isinstance(chunk, AIMessageChunk) and (text := text_of(chunk.content)):
                yield create_text_delta(delta=text, item_id=ids.for_chunk(chunk.id))
        elif mode == "updates" and isinstance(payload, dict):
            for update in payload.values():
                if not isinstance(update, dict):
                    continue  # e.g. interrupts
                for message in update.get("messages", []):
                    for item in _items(message, ids):
                        yield {"type": "response.output_item.done", "item": item}
