"""One attempt from start to its final write: run the handler within the task's
deadline, then store how it ended (completed, failed, timed out).

Lost leases and a database that gave up end the attempt without a final
write: another attempt (or this worker, once the database is back) resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .leases import RunLease
from ..storage.models import Status
from ..events.response_object import error_body
from .writer import AttemptWriter, DatabaseGaveUp, LeaseLost

logger = logging.getLogger(__name__)

#: Runs the registered handler for a lease, appending its events to the writer.
Handler = Callable[[RunLease, AttemptWriter], Awaitable[None]]


async def run_attempt(lease: RunLease, writer: AttemptWriter, handler: Handler, task_timeout_seconds: float) -> None:
    rid = lease.response_id
    try:
        if lease.conversation_id is not None:
            writer.append(
                {
                    "type": "response.resumed",
                    "attempt_number": lease.attempt_number,
                    "attempt": lease.attempt_number,  # the name databricks-ai-bridge uses
                    "conversation_id": lease.conversation_id,
                }
            )
            for event in lease.seam_events:
                writer.append(event, output=False)
        writer.append({"type": "response.in_progress", "response": writer.response(Status.IN_PROGRESS)})
        timeout = asyncio.timeout(max(0.0, lease.deadline - time.time()))
        try:
            async with timeout:
                await handler(lease, writer)
        except TimeoutError:
            if not timeout.expired():
                raise
            logger.warning("%s ran past task_timeout_seconds; failing it", rid)
            await writer.finish(Status.FAILED, error=timed_out_error(task_timeout_seconds))
            return
        await writer.finish(Status.COMPLETED)
    except LeaseLost as exc:
        logger.info("%s", exc)
    except DatabaseGaveUp as exc:
        logger.error("Giving up on %s attempt %d: %s; it resumes once the database is back",
                     rid, lease.attempt_number, exc)
    except Exception as exc:
        logger.exception("Handler failed for %s attempt %d", rid, lease.attempt_number)
        try:
            await writer.finish(Status.FAILED, error=error_body("server_error", f"{type(exc).__name__}: {exc}"))
        except (LeaseLost, DatabaseGaveUp) as write_error:
            logger.error("Could not record the failure of %s: %s", rid, write_error)


def timed_out_error(task_timeout_seconds: float) -> dict[str, str]:
    return error_body("task_timeout", f"the task ran longer than task_timeout_seconds ({task_timeout_seconds:g}s)")
