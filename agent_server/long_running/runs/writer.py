"""One attempt's writer: numbers its events and stores them through the worker's group commit.

Durable before visible: ``on_committed`` (the tail's wake-up) is called only
after a batch has committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from .leases import RunLease
from ..events.group_commit import GroupCommit
from ..storage.models import Status
from ..events.response_object import build_response, event_json, terminal_event
from ..storage.store import Finish
from ..storage.models import RecordedToolCall

logger = logging.getLogger(__name__)

#: Largest batch in one INSERT; more waiting events go in the next one.
MAX_BATCH = 500
#: A handler that produces faster than the database commits is paused here.
MAX_PENDING = 5000


def attempt_response(writer: Any, status: Status, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Response object of a writer's attempt (stored or in memory) as it stands now."""
    lease = writer.lease
    return build_response(
        response_id=lease.response_id, created_at=lease.created_at, status=status, model=lease.model,
        output=writer.output_items, attempt_number=lease.attempt_number, error=error, trace_id=writer.trace_id,
        metadata=lease.metadata, background=lease.background, custom_outputs=writer.custom_outputs,
        conversation_id=getattr(lease.history, "conversation_id", None),
    )


class LeaseLost(Exception):
    """The attempt no longer owns its response (cancelled, timed out, or claimed)."""


class DatabaseGaveUp(Exception):
    """Writes kept failing for longer than the retry bound."""


class AttemptWriter:
    """Appends one attempt's events with group commit.

    ``append`` never waits for the database: it numbers the event and queues
    it. If no flush is running, one starts at once (an idle stream pays one
    commit per event, no added delay); events that arrive during a flush go
    together in the next one (a busy stream batches itself). The flush goes
    through the worker's :class:`GroupCommit`, which puts the batches of
    several attempts in one statement when they are ready together.
    """

    def __init__(
        self,
        *,
        commits: GroupCommit,
        lease: RunLease,
        retry_seconds: float,
        on_committed: Callable[[str, int, Sequence[tuple[int, str, str]]], None],
        on_stopped: Callable[[BaseException], None],
        journal_max_bytes: int = 16 * 1024 * 1024,
        approval_timeout_seconds: float = 7 * 24 * 3600.0,
    ):
        self.commits = commits
        self.lease = lease
        self.response_id = lease.response_id
        self.attempt_number = lease.attempt_number
        self.next_sequence = lease.next_sequence
        self.retry_seconds = retry_seconds
        # Wakes tailers in this process once events are durable.
        self.on_committed = on_committed
        # The writer can store nothing more (lease lost, or the database gave up): stop the handler.
        self.on_stopped = on_stopped
        # The bound of the response's journal of model calls (journal/model_calls.py).
        self.journal_max_bytes = journal_max_bytes
        self.approval_timeout_seconds = approval_timeout_seconds
        self.store = commits.store
        self.output_items: list[dict[str, Any]] = []
        # The attempt's MLflow trace, stored with its final status.
        self.trace_id: str | None = None
        self.custom_outputs: dict[str, Any] | None = None
        self._pending: list[tuple[int, str, str]] = []
        self._flusher: asyncio.Task | None = None
        self._finishing = False
        self.failure: BaseException | None = None

    def response(self, status: Status, error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Response object as this attempt has it now."""
        return attempt_response(self, status, error)

    def append(self, event: dict[str, Any], *, output: bool = True) -> None:
        """Number, serialise and queue one event (``event`` is stamped in place).

        With ``output=False`` an ``output_item.done`` is not part of the final output
        (it closes an item an earlier attempt left open).
        """
        if self.failure is not None:
            raise self.failure
        seq = self.next_sequence
        self.next_sequence += 1
        event_type = event.get("type") or "message"
        if output and event_type == "response.output_item.done" and isinstance(event.get("item"), dict):
            self.output_items.append(event["item"])
        self._pending.append((seq, event_type, event_json(event, seq, self.response_id)))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all(), name=f"flush-{self.response_id}")

    async def wait_for_room(self) -> None:
        """Yield to the loop after each event; wait while the backlog is large.

        The yield matters for handlers that never await between events (an SDK
        draining a full queue): without it the flush could not start and a
        cancel could not land until the handler finished.
        """
        await asyncio.sleep(0)
        while len(self._pending) > MAX_PENDING and self.failure is None:
            await asyncio.sleep(0.001)

    async def _flush_all(self) -> None:
        try:
            # Once the attempt is finishing, what is left goes with the final write.
            while self._pending and not self._finishing:
                await self._while_the_handler_keeps_adding()
                if self._finishing:
                    break
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                owned = await self._with_retry(self.commits.append, self.response_id, self.attempt_number, batch)
                if not owned:
                    raise LeaseLost(f"attempt {self.attempt_number} of {self.response_id} lost its lease")
                self.on_committed(self.response_id, batch[-1][0], batch)
        except BaseException as exc:  # noqa: BLE001 - reported to the attempt, not swallowed
            self.failure = exc if isinstance(exc, Exception) else LeaseLost("writer stopped")
            self._pending.clear()
            if not isinstance(exc, asyncio.CancelledError):
                self.on_stopped(self.failure)
        finally:
            self._flusher = None

    async def _while_the_handler_keeps_adding(self) -> None:
        """Wait while the handler adds events without waiting on anything (each append yields
        once), up to a full batch. A short run then ends in one write with its final status
        (the insert, then the finish: two commits, not three), and a fast producer writes
        fuller batches; a handler that waits (a model's next token) is flushed at once."""
        seen = -1
        while len(self._pending) != seen and len(self._pending) < MAX_BATCH and not self._finishing:
            seen = len(self._pending)
            await asyncio.sleep(0)

    async def _with_retry(self, fn, *args, **kwargs):
        """Retry transient database errors with back-off, up to ``retry_seconds``.

        Retrying an INSERT whose commit did succeed is safe: the batch is
        re-sent with the same sequence numbers and ``ON CONFLICT DO NOTHING``.
        """
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                return await fn(*args, **kwargs)
            except (LeaseLost, asyncio.CancelledError):
                raise
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise DatabaseGaveUp(f"database writes failed for {self.retry_seconds:.0f}s: {exc}") from exc
                logger.warning("Write for %s failed (%s); retrying in %.2fs", self.response_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def record_tool_call(self, call: RecordedToolCall) -> None:
        """Store a finished tool call durably (retried like a batch) before the model sees its output."""
        await self._with_retry(self.commits.store.record_tool_call, self.response_id, call)

    async def record_model_call(self, position: int, input_digest: str, result: str) -> None:
        """Store a finished model call durably (retried like a batch) before the SDK acts on it."""
        await self._with_retry(self.store.record_model_call, self.response_id, self.attempt_number, position,
                               input_digest, result)

    async def ask_approval(self, request_id: str, fields: dict[str, Any]) -> None:
        """Store a request waiting for approval (retried like a batch) before its item is shown."""
        await self._with_retry(self.store.ask_approval, self.response_id, request_id,
                               timeout_seconds=self.approval_timeout_seconds, **fields)

    async def finish(
        self,
        status: Status,
        *,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Commit the remaining events with the final status and terminal event.

        The events still waiting for a flush go in the same statement as the
        end, so a short run's tail costs one commit, not two. Returns False
        if the response was ended by someone else meanwhile.
        """
        self._finishing = True
        if self._flusher is not None:
            await asyncio.wait([self._flusher])  # the batch in flight commits first
        if self.failure is not None:
            raise self.failure
        seq = self.next_sequence
        response = self.response(status, error)
        data = event_json(terminal_event(response), seq, self.response_id)
        events, self._pending = [*self._pending, (seq, status.terminal_event_type, data)], []
        finished = await self._with_retry(
            self.commits.finish,
            Finish(
                response_id=self.response_id,
                attempt_number=self.attempt_number,
                status=status,
                output=self.output_items,
                error=error,
                trace_id=self.trace_id,
                events=events,
                custom_outputs=self.custom_outputs,
            ),
        )
        if finished:
            self.next_sequence += 1
            self.on_committed(self.response_id, seq, events)
        return finished
