"""Ending a queued or running response from outside its run: cancel, delete, and a newer message
that interrupts its conversation. A finished response is left as it is."""

from __future__ import annotations

from ..errors import not_found
from ..events.response_object import terminal_event_data
from ..process.engine import Engine
from ..storage.models import ResponseRow, Status


async def cancel(engine: Engine, response_id: str, owner: str, reason: str) -> ResponseRow:
    """Cancel ``owner``'s ``response_id``; the row as it ends up. 404 if there is no such response."""
    row = await _cancel(engine, response_id, owner, reason)
    if row is None:
        raise not_found(response_id)
    return row


async def _cancel(engine: Engine, response_id: str, owner: str | None, reason: str) -> ResponseRow | None:
    """Cancel ``response_id`` (``owner`` None: whoever owns it) and stop its attempt if it runs here."""
    row = await engine.store.finalize(response_id, status=Status.CANCELLED, owner=owner,
                                      terminal_event=terminal_event_data)
    if row is not None:
        # The owner may be this worker: stop it now rather than on the NOTIFY.
        engine.worker.stop_local(response_id, reason)
        engine.worker.forget_queued(response_id)
    return row


async def delete(engine: Engine, response_id: str, owner: str) -> None:
    """Cancel first, so a running handler stops and tailers get a terminal event; then delete."""
    await cancel(engine, response_id, owner, "deleted by the client")
    await engine.store.delete_response(response_id, owner)


async def interrupt_conversation(engine: Engine, conversation_id: str) -> None:
    """Cancel a conversation's unfinished responses (their committed output joins it)."""
    for response_id, _status in await engine.store.unfinished_turns(conversation_id):
        await _cancel(engine, response_id, None, "interrupted by a newer message in its conversation")
