"""Worker-wide group commit: the event batches of all attempts in one statement.

Each attempt's writer keeps at most one batch in flight, so its events are
stored in order. Batches of different attempts that are ready at the same
time share one INSERT (and one commit). Up to ``max_in_flight`` statements
run at once: an idle worker commits a batch the moment it arrives, and a
busy one (say 1,000 slow streams) collects whatever arrived during the
statements in flight into the next one, instead of paying a round trip and
a commit per stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from .store import Store

logger = logging.getLogger(__name__)

#: Statements in flight at once; the rest of the batches wait for the next one.
MAX_IN_FLIGHT = 2
#: Events in one statement (batches are never split; one larger batch goes alone).
MAX_ROWS = 2000


@dataclass
class _Batch:
    response_id: str
    attempt_number: int
    rows: Sequence[tuple[int, str, str]]  # (sequence_number, type, data)
    stored: asyncio.Future  # True if stored, False if the attempt lost its lease


class GroupCommit:
    def __init__(self, store: Store, max_in_flight: int = MAX_IN_FLIGHT, max_rows: int = MAX_ROWS):
        self.store = store
        self.max_in_flight = max_in_flight
        self.max_rows = max_rows
        self._waiting: deque[_Batch] = deque()
        self._statements: set[asyncio.Task] = set()

    async def append(self, response_id: str, attempt_number: int, rows: Sequence[tuple[int, str, str]]) -> bool:
        """Store one attempt's batch; False if the attempt no longer owns the response.

        Raises what the database raised (the caller retries: batches are idempotent).
        """
        batch = _Batch(response_id, attempt_number, rows, asyncio.get_running_loop().create_future())
        self._waiting.append(batch)
        self._start_statements()
        return await batch.stored

    async def close(self) -> None:
        """Stop the statements in flight (on shutdown); their writers see themselves stopped."""
        for task in list(self._statements):
            task.cancel()
        await asyncio.gather(*self._statements, return_exceptions=True)
        while self._waiting:
            self._waiting.popleft().stored.cancel()

    def _start_statements(self) -> None:
        while self._waiting and len(self._statements) < self.max_in_flight:
            batches, rows = [], 0
            while self._waiting and (not batches or rows + len(self._waiting[0].rows) <= self.max_rows):
                batch = self._waiting.popleft()
                if batch.stored.done():  # its writer stopped waiting
                    continue
                batches.append(batch)
                rows += len(batch.rows)
            if not batches:
                return
            task = asyncio.create_task(self._commit(batches), name="group-commit")
            self._statements.add(task)
            task.add_done_callback(self._statement_done)

    def _statement_done(self, task: asyncio.Task) -> None:
        self._statements.discard(task)
        self._start_statements()

    async def _commit(self, batches: list[_Batch]) -> None:
        try:
            if len(batches) == 1:
                await self._commit_alone(batches[0])
                return
            try:
                owned = await self.store.append_event_batches(
                    [(b.response_id, b.attempt_number, b.rows) for b in batches]
                )
            except Exception as exc:
                # One batch's data may be what the database refused: commit each on
                # its own, so only that attempt sees the error.
                logger.debug("Group commit of %d batches failed (%s); committing them one by one", len(batches), exc)
                await asyncio.gather(*(self._commit_alone(b) for b in batches))
                return
            for batch in batches:
                _settle(batch, result=(batch.response_id, batch.attempt_number) in owned)
        except asyncio.CancelledError:
            for batch in batches:
                batch.stored.cancel()
            raise

    async def _commit_alone(self, batch: _Batch) -> None:
        try:
            owned = await self.store.append_events(batch.response_id, batch.attempt_number, batch.rows)
        except Exception as exc:
            _settle(batch, error=exc)
        else:
            _settle(batch, result=owned)


def _settle(batch: _Batch, *, result: bool | None = None, error: BaseException | None = None) -> None:
    if batch.stored.done():  # the writer stopped waiting; its attempt is over
        return
    if error is not None:
        batch.stored.set_exception(error)
    else:
        batch.stored.set_result(result)
