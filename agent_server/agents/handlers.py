"""The ``@invoke()`` handler both variants derive from their ``@stream()`` handler."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

StreamHandler = Callable[[Any], AsyncIterator[dict]]


async def output_of(stream_handler: StreamHandler, request: Any) -> dict:
    """Run ``stream_handler`` to the end; ``{"output": [...]}`` with every finished output item."""
    items = [event["item"] async for event in stream_handler(request) if event["type"] == "response.output_item.done"]
    return {"output": items}
