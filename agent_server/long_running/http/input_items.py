"""``GET /responses/{id}/input_items``: a stored request's input, in OpenAI's list shape."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..events.response_object import list_object
from .paging import Page


def listed_item(item: dict[str, Any], response_id: str, index: int) -> dict[str, Any]:
    item = dict(item)
    item.setdefault("type", "message")
    # Stored items have no ids of their own; these are stable for the response.
    item.setdefault("id", f"item_{response_id[5:]}_{index}")
    if item["type"] == "message":
        item.setdefault("status", "completed")
        if isinstance(item.get("content"), str):
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": part, "text": item["content"]}]
    return item


def list_input_items(request: dict[str, Any], response_id: str, page: Page) -> dict[str, Any]:
    """One page of the request's input items."""
    count, after = page.limit, page.after
    items = [listed_item(item, response_id, i) for i, item in enumerate(request.get("input") or [])]
    if page.descending:
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise ApiError(400, f"after={after[:80]!r} is not an input item of this response.",
                           code="invalid_parameter", param="after")
        items = items[ids.index(after) + 1:]
    return list_object(items[:count], has_more=len(items) > count)
