"""Reading a stored response: ``GET /responses/{id}`` as the Response now, or its events as SSE
after a cursor (``stream=true&starting_after=N``), and waiting for a standard request's end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import Request

from ..errors import ApiError, not_found, shutting_down
from ..events.response_object import response_from_row
from ..storage.models import StoredEvent
from ..events.tail import TailClosed
from ..process.engine import Engine
from . import validation
from .sse_response import EventStreamResponse, done_stream
from .stream_end import end_on_failure


async def retrieve(engine: Engine, response_id: str, owner: str, request: Request):
    """``GET /responses/{id}``."""
    params = request.query_params
    stream = validation.flag(params.get("stream"), "stream")
    starting_after = validation.cursor(params.get("starting_after"))
    if starting_after is not None and not stream:
        raise ApiError(400, "starting_after is only supported together with stream=true.",
                       code="invalid_parameter", param="starting_after")
    row = await engine.store.get_response_status(response_id, owner)
    if row is None:
        raise not_found(response_id)
    if stream:
        after = -1 if starting_after is None else starting_after
        if after > row.last_sequence:
            # Never a number this response has sent (even running: events are visible only once
            # stored), so no tail could ever reach it: refused in every state.
            raise ApiError(400, f"starting_after={after} is past the last event ({row.last_sequence}) "
                           f"of this {row.status.value} response; use a sequence_number you received.",
                           code="invalid_parameter", param="starting_after")
        if after == row.last_sequence and row.status.is_terminal:
            # The client already has the terminal event (it lost only [DONE]): there is nothing
            # after it, so end now; tailing would wait forever for an event that never comes.
            return done_stream()
        return event_stream(engine, response_id, owner, after)
    output = None
    if not row.status.is_terminal and row.attempt_number > 0:
        output = await engine.store.attempt_output_items(response_id, row.attempt_number)
    response = response_from_row(row, output)
    if any(item.get("type") == "mcp_approval_request" for item in response["output"]):
        response["approval_requests"] = approval_requests(await engine.store.response_approvals(response_id))
    return response


def approval_requests(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where each approval request of a response stands (our extension of the Response object):
    ``pending``, ``approved``, ``rejected``, ``declined`` (its conversation moved on) or ``expired``."""
    return [{"id": r["request_id"], "status": r["status"], "expires_at": int(r["expires_at"].timestamp()),
             "answered_by": r["answered_by"]} for r in rows]


async def current_response(engine: Engine, response_id: str, owner: str) -> dict[str, Any]:
    """A stored response's Response object as it is now."""
    row = await engine.store.get_response_status(response_id, owner)
    if row is None:
        raise not_found(response_id)
    return response_from_row(row)


def event_stream(engine: Engine, response_id: str, owner: str, after: int,
                 headers: dict[str, str] | None = None, first: StoredEvent | None = None) -> EventStreamResponse:
    """The response's events after ``after`` as SSE, live until its terminal event, then ``[DONE]``
    (``first``: the event after ``after``, when the caller just stored it)."""
    async def exists() -> bool:
        return await engine.store.get_response_status(response_id, owner) is not None

    async def frames() -> AsyncIterator[str]:
        ended = False
        # One chunk per batch of available events: one socket write, not one per event.
        async with aclosing(engine.tail.tail_batches(response_id, after, exists, first=first)) as batches:
            async for batch in batches:
                if batch is None:
                    yield ": keep-alive\n\n"
                    continue
                ended = batch[-1].is_terminal
                yield "".join([f"data: {event.data}\n\n" for event in batch])
        if not ended:
            raise not_found(response_id)  # the tail ended without a terminal event: deleted

    # A tail that cannot go on (deleted, database gone, shutdown) ends with an error frame and [DONE].
    return EventStreamResponse(end_on_failure(frames(), response_id), headers=headers, first_ready=first is not None)


async def final_response(engine: Engine, response_id: str, owner: str) -> dict[str, Any]:
    """Wait for a stored response's terminal event; its Response object."""
    async def exists() -> bool:
        return await engine.store.get_response_status(response_id, owner) is not None

    try:
        async with aclosing(engine.tail.tail_batches(response_id, 0, exists)) as batches:
            async for batch in batches:
                if batch and batch[-1].is_terminal:
                    return json.loads(batch[-1].data)["response"]
    except TailClosed:
        raise shutting_down() from None
    raise not_found(response_id)  # deleted while it ran
