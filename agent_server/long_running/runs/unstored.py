"""Standard requests that are not stored (``store: false``, or no database):
the same attempt lifecycle (:func:`run_attempt`: deadline, completed, failed,
timed out), handler, grammar and Response object, with the events kept in
memory and sent straight to the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from .attempt import Handler, run_attempt
from .leases import RunLease
from ..storage.models import Status
from ..events.response_object import event_json, terminal_event
from .writer import attempt_response


class MemoryWriter:
    """The :class:`AttemptWriter` interface the handler uses, numbering events into a queue."""

    def __init__(self, lease: RunLease):
        self.lease = lease
        self.response_id = lease.response_id
        self.next_sequence = 0
        self.output_items: list[dict[str, Any]] = []
        self.trace_id: str | None = None
        self.custom_outputs: dict[str, Any] | None = None
        self.events: asyncio.Queue[str | None] = asyncio.Queue()

    def response(self, status: Status, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return attempt_response(self, status, error)

    def append(self, event: dict[str, Any], *, output: bool = True) -> None:
        if output and event.get("type") == "response.output_item.done" and isinstance(event.get("item"), dict):
            self.output_items.append(event["item"])
        self.events.put_nowait(event_json(event, self.next_sequence, self.response_id))
        self.next_sequence += 1

    async def finish(self, status: Status, *, error: dict[str, Any] | None = None) -> bool:
        """The terminal event, then the end of the stream."""
        self.append(terminal_event(self.response(status, error)), output=False)
        self.events.put_nowait(None)
        return True

    async def wait_for_room(self) -> None:
        await asyncio.sleep(0)

    async def record_tool_call(self, call) -> None:
        """Nothing is stored for an unstored run, so there is no later attempt to serve it to."""


async def run_unstored(lease: RunLease, handler: Handler, task_timeout_seconds: float) -> AsyncIterator[str]:
    """The whole stream of one unstored run, as serialised events (lifecycle included)."""
    writer = MemoryWriter(lease)

    async def run() -> None:
        writer.append({"type": "response.created", "response": writer.response(Status.IN_PROGRESS)})
        try:
            await run_attempt(lease, writer, handler, task_timeout_seconds)
        finally:
            writer.events.put_nowait(None)  # (a second end marker after finish is never read)

    task = asyncio.create_task(run(), name=f"unstored-{lease.response_id}")
    try:
        while (data := await writer.events.get()) is not None:
            yield data
    finally:
        if not task.done():
            task.cancel()  # the client went away: an unstored run has no one left to answer
        await asyncio.gather(task, return_exceptions=True)
