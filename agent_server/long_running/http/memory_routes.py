"""``/memories``: what the agent remembers about the caller, to read, add and erase.

``GET /memories`` (``limit``, ``after``; newest first, OpenAI's list shape),
``GET /memories/{id}``, ``POST /memories`` ``{"text"}``, ``DELETE /memories/{id}``
and ``DELETE /memories`` (all of the caller's). Only the caller's own memories
exist here: another identity's id answers 404, as an unknown one does.
Deployed, a request without a forwarded identity is a 403 (it has no memory).
Erasing memories leaves conversations and responses as they are.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from ..errors import ApiError
from ..events.response_object import list_object
from ..ids import MEMORY_ID
from ..memory.access import MemoryUnavailable, NoIdentity, OwnMemory
from ..memory.limits import MemoryRefused
from ..storage.models import MemoryRow
from .context import RouteContext
from .identity import owner_of
from .paging import page_of
from .validation import read_json_body


def memory_object(row: MemoryRow) -> dict[str, Any]:
    return {"id": row.memory_id, "object": "memory", "text": row.text,
            "created_at": int(row.created_at.timestamp()), "response_id": row.response_id}


def memory_not_found(memory_id: str) -> ApiError:
    shown = memory_id[:80] + ("…" if len(memory_id) > 80 else "")
    return ApiError(404, f"No memory with id '{shown}' found.", code="memory_not_found", param="memory_id")


def install_memory_routes(app: FastAPI, ctx: RouteContext) -> None:
    def own(request: Request) -> OwnMemory:
        """The caller's memory: 503 without a database, 403 deployed without an identity."""
        ctx.engines.require()
        try:
            return ctx.memory.for_owner(owner_of(request.headers))
        except NoIdentity as exc:
            raise ApiError(403, str(exc), code="memory_needs_identity") from None
        except MemoryUnavailable as exc:  # the database went away since require()
            raise ApiError(503, str(exc), code="background_unavailable") from None

    def checked_id(memory_id: str) -> str:
        """An id this server cannot have made is unknown, found without a look-up."""
        if not MEMORY_ID.match(memory_id):
            raise memory_not_found(memory_id)
        return memory_id

    @app.get("/memories")
    async def list_memories(request: Request):
        memory = own(request)
        page = page_of(request.query_params, ordered=False)
        after = page.after
        if after is not None and not MEMORY_ID.match(after):
            raise ApiError(400, f"after must be a memory id ('mem_' followed by 32 lowercase hex digits), "
                           f"got {after[:80]!r}.", code="invalid_parameter", param="after")
        # One row more than asked for says whether there is another page.
        rows = await memory.page(limit=page.limit + 1, after=after)
        if after is not None and not rows and await memory.get(after) is None:
            # An empty page would look like the end of the list; say the cursor is wrong instead.
            raise ApiError(400, f"after: no memory with id '{after}' found.", code="invalid_parameter",
                           param="after")
        return list_object([memory_object(row) for row in rows[:page.limit]], has_more=len(rows) > page.limit)

    @app.post("/memories")
    async def create_memory(request: Request):
        memory = own(request)
        data = await read_json_body(request, ctx.settings.max_request_bytes)
        try:
            row = await memory.save(data.get("text"))
        except MemoryRefused as exc:
            raise ApiError(400, exc.message, code=exc.code, param="text") from None
        return memory_object(row)

    @app.get("/memories/{memory_id}")
    async def retrieve_memory(memory_id: str, request: Request):
        checked_id(memory_id)
        row = await own(request).get(memory_id)
        if row is None:
            raise memory_not_found(memory_id)
        return memory_object(row)

    @app.delete("/memories/{memory_id}")
    async def delete_memory(memory_id: str, request: Request):
        checked_id(memory_id)
        if not await own(request).delete(memory_id):
            raise memory_not_found(memory_id)
        return {"id": memory_id, "object": "memory.deleted", "deleted": True}

    @app.delete("/memories")
    async def delete_all_memories(request: Request):
        """Every memory of the caller's; their conversations and responses stay."""
        deleted = await own(request).delete_all()
        return {"object": "memories.deleted", "deleted": True, "count": deleted}
