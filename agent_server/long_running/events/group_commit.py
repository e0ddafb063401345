"""Worker-wide group commit: the writes of all attempts, several per statement.

Each attempt's writer keeps at most one batch in flight, so its events are
stored in order, and finishes only after its last batch. Batches (and
finishes) of different attempts that are ready at the same time share one
statement and one commit. Up to ``max_in_flight`` statements of each kind
run at once: an idle worker writes the moment something arrives, and a busy
one (say 1,000 slow streams) collects whatever arrived during the statements
in flight into the next one, instead of paying a round trip and a commit
per stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..storage.store import Finish, Store

logger = logging.getLogger(__name__)

#: Statements of one kind in flight at once; what arrives meanwhile waits for the next one.
MAX_IN_FLIGHT = 2
#: Events in one statement (a batch is never split; one larger batch goes alone).
MAX_ROWS = 2000

Item = TypeVar("Item")


@dataclass
class _Pending(Generic[Item]):
    item: Item
    size: int
    result: asyncio.Future


class _Batcher(Generic[Item]):
    """Runs ``many(items)`` for the items that are waiting; one waiting item is a group of one.

    ``many`` returns one result per item. If a group of several fails, each
    item is retried as a group of its own, so an item the database refuses
    fails alone.
    """

    def __init__(self, name: str, many: Callable[[list[Item]], Awaitable[list[Any]]],
                 max_in_flight: int, max_size: int):
        self.name = name
        self.many = many
        self.max_in_flight = max_in_flight
        self.max_size = max_size
        self._waiting: deque[_Pending[Item]] = deque()
        self._statements: set[asyncio.Task] = set()
        self._closed = False

    async def submit(self, item: Item, size: int = 1) -> Any:
        pending = _Pending(item, size, asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        self._start_statements()
        return await pending.result

    async def close(self) -> None:
        self._closed = True  # nothing new starts while the ones in flight stop
        for task in list(self._statements):
            task.cancel()
        await asyncio.gather(*self._statements, return_exceptions=True)
        while self._waiting:
            self._waiting.popleft().result.cancel()

    def _start_statements(self) -> None:
        while self._waiting and len(self._statements) < self.max_in_flight and not self._closed:
            group, size = [], 0
            while self._waiting and (not group or size + self._waiting[0].size <= self.max_size):
                pending = self._waiting.popleft()
                if pending.result.done():  # its writer stopped waiting
                    continue
                group.append(pending)
                size += pending.size
            if not group:
                return
            task = asyncio.create_task(self._write_group(group), name=f"group-commit-{self.name}")
            self._statements.add(task)
            task.add_done_callback(self._statement_done)

    def _statement_done(self, task: asyncio.Task) -> None:
        self._statements.discard(task)
        self._start_statements()

    async def _write_group(self, group: list[_Pending[Item]]) -> None:
        try:
            if len(group) == 1:
                await self._write_alone(group[0])
                return
            try:
                results = await self.many([p.item for p in group])
            except Exception as exc:
                logger.debug("Group commit of %d %s failed (%s); retrying them one by one",
                             len(group), self.name, exc)
                await asyncio.gather(*(self._write_alone(p) for p in group))
                return
            for pending, result in zip(group, results, strict=True):
                _settle(pending, result=result)
        except asyncio.CancelledError:
            for pending in group:
                pending.result.cancel()
            raise

    async def _write_alone(self, pending: _Pending[Item]) -> None:
        try:
            [result] = await self.many([pending.item])
        except Exception as exc:
            _settle(pending, error=exc)
        else:
            _settle(pending, result=result)


def _settle(pending: _Pending, *, result: Any = None, error: BaseException | None = None) -> None:
    if pending.result.done():  # the writer stopped waiting; its attempt is over
        return
    if error is not None:
        pending.result.set_exception(error)
    else:
        pending.result.set_result(result)


class GroupCommit:
    """One worker's event batches and finishes, grouped into shared statements."""

    def __init__(self, store: Store, max_in_flight: int = MAX_IN_FLIGHT, max_rows: int = MAX_ROWS):
        self.store = store
        self._appends: _Batcher[tuple[str, int, Sequence[tuple[int, str, str]]]] = _Batcher(
            "batches", self._append_many, max_in_flight, max_rows)
        self._finishes: _Batcher[Finish] = _Batcher("finishes", self._finish_many, max_in_flight, max_rows)

    async def append(self, response_id: str, attempt_number: int, rows: Sequence[tuple[int, str, str]]) -> bool:
        """Store one attempt's batch; False if the attempt no longer owns the response.

        Raises what the database raised (the caller retries: batches are idempotent).
        """
        return await self._appends.submit((response_id, attempt_number, rows), len(rows))

    async def finish(self, finish: Finish) -> bool:
        """The attempt's final write (its last events, status, terminal event); False if it
        no longer owned the response. Raises what the database raised."""
        return await self._finishes.submit(finish, len(finish.events))

    async def close(self) -> None:
        """Stop the statements in flight (on shutdown); their writers see themselves stopped."""
        await asyncio.gather(self._appends.close(), self._finishes.close())

    async def _append_many(self, batches: list[tuple[str, int, Sequence[tuple[int, str, str]]]]) -> list[bool]:
        owners = await self.store.append_events(batches)
        return [(rid, attempt) in owners for rid, attempt, _ in batches]

    async def _finish_many(self, finishes: list[Finish]) -> list[bool]:
        owners = await self.store.finish_responses(finishes)
        return [(f.response_id, f.attempt_number) in owners for f in finishes]
