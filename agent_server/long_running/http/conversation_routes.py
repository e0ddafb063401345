"""``/conversations``: OpenAI's Conversations API over the stored conversations.

``POST /conversations`` (optional ``items``, up to 20, and ``metadata``), ``GET``
and ``POST`` (metadata) ``/conversations/{id}``, ``DELETE /conversations/{id}``
and ``GET /conversations/{id}/items`` (OpenAI's list shape, ``limit``, ``after``,
``order``). A conversation is its creator's: anyone else gets 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request

from . import validation as http_input
from ..conversations.turns import conversation_not_found
from ..ids import CONVERSATION_ID, new_conversation_id
from ..errors import ApiError
from .identity import owner_of
from .input_items import listed_item
from .paging import page_of
from ..storage.models import ConversationRow
from ..events.response_object import list_object
from ..storage.store import Store

MAX_INITIAL_ITEMS = 20


def conversation_object(row: ConversationRow) -> dict[str, Any]:
    return {"id": row.conversation_id, "object": "conversation", "created_at": int(row.created_at.timestamp()),
            "metadata": row.metadata or {}}


def _checked_id(conversation_id: str) -> str:
    if not CONVERSATION_ID.match(conversation_id):
        raise conversation_not_found(conversation_id, param="conversation_id")
    return conversation_id


def install_conversation_routes(app: FastAPI, store: Callable[[], Store], validator: Callable[[], Awaitable[Any]],
                                max_request_bytes: int) -> None:
    """Add the routes; ``store()`` gives the engine's store (or raises the 503 of a missing database),
    ``await validator()`` MLflow's request validator (once MLflow is imported)."""

    async def owned(conversation_id: str, request: Request) -> tuple[Store, str, ConversationRow]:
        current, owner = store(), owner_of(request.headers)
        row = await current.get_conversation(_checked_id(conversation_id), owner)
        if row is None:
            raise conversation_not_found(conversation_id, param="conversation_id")
        return current, owner, row

    @app.post("/conversations")
    async def create(request: Request):
        data = await http_input.read_json_body(request, max_request_bytes)
        http_input.check_metadata(data.get("metadata"))
        items = await _initial_items(data.get("items"), validator)
        http_input.check_storable(items)
        row = await store().create_conversation(new_conversation_id(), owner_of(request.headers), items=items,
                                                metadata=data.get("metadata"))
        return conversation_object(row)

    @app.get("/conversations/{conversation_id}")
    async def retrieve(conversation_id: str, request: Request):
        _store, _owner, row = await owned(conversation_id, request)
        return conversation_object(row)

    @app.post("/conversations/{conversation_id}")
    async def update(conversation_id: str, request: Request):
        current, owner, _row = await owned(conversation_id, request)
        data = await http_input.read_json_body(request, max_request_bytes)
        if not isinstance(data.get("metadata"), dict):
            raise ApiError(400, "Send {\"metadata\": {...}}: the metadata is the only part of a conversation "
                           "that can be changed.", code="invalid_parameter", param="metadata")
        http_input.check_metadata(data["metadata"])
        row = await current.update_conversation_metadata(conversation_id, owner, data["metadata"])
        if row is None:
            raise conversation_not_found(conversation_id, param="conversation_id")
        return conversation_object(row)

    @app.delete("/conversations/{conversation_id}")
    async def delete(conversation_id: str, request: Request):
        current, owner, _row = await owned(conversation_id, request)
        await current.delete_conversation(conversation_id, owner)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    @app.get("/conversations/{conversation_id}/items")
    async def items(conversation_id: str, request: Request):
        current, _owner, _row = await owned(conversation_id, request)
        page = page_of(request.query_params)
        limit, after = page.limit, None
        if page.after is not None:
            after = await current.conversation_item_position(conversation_id, page.after)
            if after is None:
                raise ApiError(400, f"after={page.after[:80]!r} is not an item of this conversation.",
                               code="invalid_parameter", param="after")
        # One row more than asked for says whether there is another page.
        rows = await current.conversation_items(conversation_id, limit=limit + 1, descending=page.descending,
                                                after=after)
        page = [listed_item(item, conversation_id, position) for position, item in rows[:limit]]
        return list_object(page, has_more=len(rows) > limit)


async def _initial_items(items: Any, validator: Callable[[], Awaitable[Any]]) -> list[dict[str, Any]]:
    """The ``items`` of a new conversation, as a handler's input items (MLflow's request model checks them)."""
    if items is None:
        return []
    if not isinstance(items, list) or len(items) > MAX_INITIAL_ITEMS:
        raise ApiError(400, f"items must be a list of up to {MAX_INITIAL_ITEMS} input items.",
                       code="invalid_parameter", param="items")
    try:
        request = (await validator()).validate_and_convert_request({"input": items})
    except ValueError as exc:
        raise ApiError(400, f"Invalid items: {str(exc)[:2000]}", code="invalid_parameter", param="items") from None
    return request.model_dump(mode="json", exclude_none=True)["input"]
