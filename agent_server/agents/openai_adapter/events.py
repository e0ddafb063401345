"""OpenAI Agents SDK stream events -> Responses stream events for the server.

Keeps what a client needs: text deltas, and one ``response.output_item.done``
per message, function call and function call output. Item ids stay as the
SDK made them (``__fake_id__`` for Chat Completions models); the server swaps
them for the real response id (see ``replace_fake_id``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from mlflow.types.responses import create_text_delta

_ITEM_TYPES = ("message", "function_call")


def _output_done(item: dict) -> dict:
    return {"type": "response.output_item.done", "item": item}


def _tool_output_item(item: dict) -> dict:
    # MLflow's output schema wants a string; tools may return other JSON.
    if not isinstance(item.get("output"), str):
        item = {**item, "output": json.dumps(item.get("output"), default=str)}
    return item


async def responses_events(stream_events: AsyncIterator[Any]) -> AsyncIterator[dict]:
    """Convert ``RunResultStreaming.stream_events()`` into Responses event dicts."""
    async for event in stream_events:
        if event.type == "raw_response_event":
            data = event.data
            if data.type == "response.output_text.delta":
                yield create_text_delta(delta=data.delta, item_id=data.item_id)
            elif data.type == "response.output_item.done" and data.item.type in _ITEM_TYPES:
                yield _output_done(data.item.model_dump(exclude_none=True))
        elif event.type == "run_item_stream_event" and event.item.type == "tool_call_output_item":
            yield _output_done(_tool_output_item(event.item.to_input_item()))
