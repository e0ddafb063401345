"""``GET /responses/{id}/input_items``: a stored request's input, in OpenAI's list shape."""

from __future__ import annotations

from typing import Any

from .errors import ApiError
from .response_object import list_object

MAX_LIMIT = 100


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


def list_input_items(request: dict[str, Any], response_id: str, *, limit: str | None, after: str | None,
                     order: str | None) -> dict[str, Any]:
    if limit is None:
        count = 20
    elif limit.isdigit() and 1 <= int(limit) <= MAX_LIMIT:
        count = int(limit)
    else:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit[:40]!r}.",
                       code="invalid_parameter", param="limit")
    order = order or "desc"  # OpenAI's default: newest first
    if order not in ("asc", "desc"):
        raise ApiError(400, f"order must be 'asc' or 'desc', got {order[:40]!r}.", code="invalid_parameter",
                       param="order")
    items = [listed_item(item, response_id, i) for i, item in enumerate(request.get("input") or [])]
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise ApiError(400, f"after={after[:80]!r} is not an input item of this response.",
                           code="invalid_parameter", param="after")
        items = items[ids.index(after) + 1:]
    return list_object(items[:count], has_more=len(items) > count)
