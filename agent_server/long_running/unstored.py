"""Standard requests that are not stored (``store: false``, or no database):
the same handler, grammar and Response object, with the events kept in memory
and sent straight to the client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from .attempt import Handler
from .attempts import RunLease
from .models import Status
from .response_object import error_body, event_json
from .writer import attempt_response

logger = logging.getLogger(__name__)


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

    async def wait_for_room(self) -> None:
        await asyncio.sleep(0)

    async def record_tool_call(self, call) -> None:
        """Nothing is stored for an unstored run, so there is no later attempt to serve it to."""


async def run_unstored(lease: RunLease, handler: Handler) -> AsyncIterator[str]:
    """The whole stream of one unstored run, as serialised events (lifecycle included)."""
    writer = MemoryWriter(lease)

    async def run() -> None:
        writer.append({"type": "response.created", "response": writer.response(Status.IN_PROGRESS)})
        writer.append({"type": "response.in_progress", "response": writer.response(Status.IN_PROGRESS)})
        try:
            async with asyncio.timeout(max(0.0, lease.deadline - time.time())):
                await handler(lease, writer)
            final = writer.response(Status.COMPLETED)
        except Exception as exc:
            logger.exception("Handler failed for unstored %s", lease.response_id)
            final = writer.response(Status.FAILED, error_body("server_error", f"{type(exc).__name__}: {exc}"))
        writer.append({"type": f"response.{final['status']}", "response": final})
        writer.events.put_nowait(None)

    task = asyncio.create_task(run(), name=f"unstored-{lease.response_id}")
    try:
        while (data := await writer.events.get()) is not None:
            yield data
    finally:
        if not task.done():
            task.cancel()  # the client went away: an unstored run has no one left to answer
        await asyncio.gather(task, return_exceptions=True)
