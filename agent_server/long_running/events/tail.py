"""Tailing a response's event log: read after a cursor, then follow it live.

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

from ..storage.models import StoredEvent
from ..storage.store import Store

logger = logging.getLogger(__name__)

#: Committed events held for one in-process tailer that has not taken them
#: yet; past this (a slow reader) it reads them from the database instead.
MAX_HANDOFF = 2000
#: How long one watch of a tail in another process lasts; renewed at half.
WATCH_SECONDS = 60.0


class TailClosed(Exception):
    """The server is shutting down: the tail ends before the response does."""


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


class EventTail:
    """Follows responses' events for SSE clients; woken by commits here and NOTIFYs from elsewhere."""

    def __init__(self, store: Store, poll_interval_seconds: float, runs_here: Callable[[str], bool]):
        self.store = store
        self.poll_interval_seconds = poll_interval_seconds
        # Whether this process runs a response: its writer wakes our tailers
        # directly, so they need no NOTIFY (and no watch).
        self.runs_here = runs_here
        self._tailers: dict[str, set[_Tailer]] = {}
        self._closed = False

    def close(self) -> None:
        """Shutdown: every tail, now and later, raises TailClosed at its next step."""
        self._closed = True
        self.wake_all()

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
        events = list(map(StoredEvent._make, rows)) if rows else None
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
        first: StoredEvent | None = None,
    ) -> AsyncIterator[list[StoredEvent] | None]:
        """Yield the events with ``sequence_number > after``, in order, until the terminal one.

        Each step yields every event available at once (a list), or ``None``
        as a keep-alive when nothing happened for ``keepalive_seconds``.
        ``still_exists`` is awaited on quiet polls so a deleted response ends
        the tail instead of hanging it. ``first``: the event after ``after``,
        known committed (the request that just stored it), so it is sent
        without reading it back.
        """
        tailer = _Tailer(after)
        if first is not None:
            tailer.ready.append(first)
        self._tailers.setdefault(response_id, set()).add(tailer)
        try:
            quiet_since = time.monotonic()
            while True:
                if self._closed:
                    raise TailClosed()
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


