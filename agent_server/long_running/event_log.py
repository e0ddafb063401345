"""The event log: append with group commit, read after a cursor, tail live.

Durable before visible: tailers are woken only after a batch has committed,
in this process directly and in other processes by the NOTIFY that commits
with the batch. A lost notification costs a tailer at most one poll interval.
In this process the committed rows are also handed to the tailers, so a live
tail does not read back from the database what it was just given.

Writers NOTIFY only for responses that a tail in another process watches
(``responses.watched_until``, set by that tail before it waits and renewed
while it does): a run nobody follows from elsewhere costs its worker no
notification round trip per batch, and Postgres no signal to every listener.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .group_commit import GroupCommit
from .models import Status, StoredEvent
from .response_object import build_response, event_json, terminal_event
from .store import Finish, Store

logger = logging.getLogger(__name__)

#: Largest batch in one INSERT; more waiting events go in the next one.
MAX_BATCH = 500
#: A handler that produces faster than the database commits is paused here.
MAX_PENDING = 5000
#: Committed events held for one in-process tailer that has not taken them
#: yet; past this (a slow reader) it reads them from the database instead.
MAX_HANDOFF = 2000
#: How long one watch of a tail in another process lasts; renewed at half.
WATCH_SECONDS = 60.0


class LeaseLost(Exception):
    """The attempt no longer owns its response (cancelled, timed out, or claimed)."""


class DatabaseGaveUp(Exception):
    """Writes kept failing for longer than the retry bound."""


class _Tailer:
    __slots__ = ("cursor", "wakeup", "ready", "watch_until")

    def __init__(self, cursor: int):
        self.cursor = cursor
        self.wakeup = asyncio.Event()
        # Committed events handed over by a writer in this process, in order.
        self.ready: list[StoredEvent] = []
        # Monotonic time until which writers elsewhere are known to NOTIFY for us.
        self.watch_until = 0.0

    def take_ready(self) -> list[StoredEvent] | None:
        """The handed-over events that continue the cursor, or None (then read the database)."""
        ready, self.ready = self.ready, []
        start = 0
        while start < len(ready) and ready[start].sequence_number <= self.cursor:
            start += 1  # already read from the database meanwhile
        if start == len(ready) or ready[start].sequence_number != self.cursor + 1:
            return None
        events = ready[start:]
        if events[-1].sequence_number - events[0].sequence_number != len(events) - 1:
            return None
        return events


class EventLog:
    """Reading and tailing a response's events; wakes tailers after commits."""

    def __init__(self, store: Store, poll_interval_seconds: float):
        self.store = store
        self.poll_interval_seconds = poll_interval_seconds
        # Whether this process runs a response: its writer wakes our tailers
        # directly, so they need no NOTIFY (and no watch). The runner, built after
        # this log, sets it; until then every tail watches.
        self.runs_here: Callable[[str], bool] = lambda _response_id: False
        self._tailers: dict[str, set[_Tailer]] = {}

    def committed(
        self, response_id: str, last_sequence: int, rows: Sequence[tuple[int, str, str]] | None = None
    ) -> None:
        """Events up to ``last_sequence`` are durable: wake whoever waits for them.

        ``rows`` (``(sequence_number, type, data)``, in order) are the events
        that commit stored; tailers here take them without a database read.
        Call this only after the commit returned (durable before visible).
        """
        tailers = self._tailers.get(response_id)
        if not tailers:
            return
        events = [StoredEvent(*row) for row in rows] if rows else None
        for tailer in tailers:
            if tailer.cursor < last_sequence:
                if events:
                    if len(tailer.ready) + len(events) > MAX_HANDOFF:
                        tailer.ready.clear()  # a slow reader: it catches up from the database
                    else:
                        tailer.ready.extend(events)
                tailer.wakeup.set()

    def on_notify(self, payload: str) -> None:
        """A NOTIFY from any process: ``<response_id>:<last_sequence>``."""
        response_id, _, seq = payload.rpartition(":")
        try:
            self.committed(response_id, int(seq))
        except ValueError:
            logger.warning("Ignoring malformed event notification %r", payload)

    def wake_all(self) -> None:
        """After the LISTEN connection came back: anything may have been missed."""
        for tailers in self._tailers.values():
            for tailer in tailers:
                tailer.wakeup.set()

    async def tail_batches(
        self,
        response_id: str,
        after: int,
        still_exists: Callable[[], Any],
        keepalive_seconds: float = 15.0,
    ) -> AsyncIterator[list[StoredEvent] | None]:
        """Yield the events with ``sequence_number > after``, in order, until the terminal one.

        Each step yields every event available at once (a list), or ``None``
        as a keep-alive when nothing happened for ``keepalive_seconds``.
        ``still_exists`` is awaited on quiet polls so a deleted response ends
        the tail instead of hanging it.
        """
        tailer = _Tailer(after)
        self._tailers.setdefault(response_id, set()).add(tailer)
        try:
            quiet_since = time.monotonic()
            while True:
                # Clear before reading: a commit after this point sets it again.
                tailer.wakeup.clear()
                events = tailer.take_ready()
                from_db = events is None
                if from_db:
                    events = await self.store.events_after(response_id, tailer.cursor)
                if events:
                    for index, event in enumerate(events):
                        if event.is_terminal:
                            events = events[: index + 1]
                            break
                    tailer.cursor = events[-1].sequence_number
                    yield events
                    if events[-1].is_terminal:
                        return
                    quiet_since = time.monotonic()
                    if (from_db and len(events) >= 1000) or tailer.wakeup.is_set():
                        continue
                if time.monotonic() >= tailer.watch_until - WATCH_SECONDS / 2 and not self.runs_here(response_id):
                    # About to wait for a writer elsewhere: ask it to NOTIFY. Events it
                    # committed before the watch came without one, so read once more.
                    await self.store.watch_response(response_id, WATCH_SECONDS)
                    tailer.watch_until = time.monotonic() + WATCH_SECONDS
                    continue
                try:
                    await asyncio.wait_for(tailer.wakeup.wait(), self.poll_interval_seconds)
                except TimeoutError:
                    if not await still_exists():
                        return
                    if time.monotonic() - quiet_since >= keepalive_seconds:
                        quiet_since = time.monotonic()
                        yield None
        finally:
            tailers = self._tailers.get(response_id)
            if tailers is not None:
                tailers.discard(tailer)
                if not tailers:
                    del self._tailers[response_id]


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
        log: EventLog,
        response_id: str,
        attempt_number: int,
        next_sequence: int,
        created_at: float,
        model: str,
        retry_seconds: float,
        on_lease_lost: Callable[[BaseException], None],
    ):
        self.commits = commits
        self.log = log
        self.response_id = response_id
        self.attempt_number = attempt_number
        self.next_sequence = next_sequence
        self.created_at = created_at
        self.model = model
        self.retry_seconds = retry_seconds
        self.on_lease_lost = on_lease_lost
        self.output_items: list[dict[str, Any]] = []
        self._pending: list[tuple[int, str, str]] = []
        self._flusher: asyncio.Task | None = None
        self._finishing = False
        self.failure: BaseException | None = None

    def append(self, event: dict[str, Any]) -> None:
        """Number, serialise and queue one event (``event`` is stamped in place)."""
        if self.failure is not None:
            raise self.failure
        seq = self.next_sequence
        self.next_sequence += 1
        event_type = event.get("type") or "message"
        if event_type == "response.output_item.done" and isinstance(event.get("item"), dict):
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
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                owned = await self._with_retry(self.commits.append, self.response_id, self.attempt_number, batch)
                if not owned:
                    raise LeaseLost(f"attempt {self.attempt_number} of {self.response_id} lost its lease")
                self.log.committed(self.response_id, batch[-1][0], batch)
        except BaseException as exc:  # noqa: BLE001 - reported to the attempt, not swallowed
            self.failure = exc if isinstance(exc, Exception) else LeaseLost("writer stopped")
            self._pending.clear()
            if not isinstance(exc, asyncio.CancelledError):
                self.on_lease_lost(self.failure)
        finally:
            self._flusher = None

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

    async def finish(
        self,
        status: Status,
        *,
        error: dict[str, Any] | None = None,
        incomplete_details: dict[str, Any] | None = None,
        trace_id: str | None = None,
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
        response = build_response(
            response_id=self.response_id,
            created_at=self.created_at,
            status=status,
            model=self.model,
            output=self.output_items,
            attempt_number=self.attempt_number,
            error=error,
            incomplete_details=incomplete_details,
            trace_id=trace_id,
        )
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
                incomplete_details=incomplete_details,
                trace_id=trace_id,
                events=events,
            ),
        )
        if finished:
            self.next_sequence += 1
            self.log.committed(self.response_id, seq, events)
        return finished
