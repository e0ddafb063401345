"""Database calls made while a client waits: bounded in time, failures answered in words.

A request must never hang on a database that is down or frozen (a SIGSTOPped
server or a network partition holds its sockets open, so no server-side
time-out fires), and never answer a bare 500. A :class:`Deadline` runs each
call in a task of its own and waits at most ``seconds`` for it; a
connection error meanwhile is retried (a pooled connection may have died with
an earlier server) until the bound is spent. Then the request gets
:class:`DatabaseUnreachable`, a 503 with ``code: "database_unavailable"``.

The abandoned call is cancelled in the background rather than awaited:
psycopg's cancellation asks the server to cancel the statement and waits for
it, which against a frozen server takes seconds. Its connection goes back to
the pool broken and the pool discards it.

Run writes (an attempt's batches) do not come through here: they keep the
writer's own retry policy (``db_retry_seconds``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

from ..errors import ApiError

T = TypeVar("T")

# What a database that is down, restarting or unreachable raises (PoolTimeout and
# QueryCanceled are OperationalErrors; InterfaceError is "the connection is closed").
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


class DatabaseUnreachable(ApiError):
    """503: the database did not answer within the bound."""

    def __init__(self, detail: str):
        super().__init__(503, f"The database is unreachable ({detail}); retry in a few seconds.",
                         code="database_unavailable")


class Deadline:
    """Each call answers within ``seconds`` or raises :class:`DatabaseUnreachable`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._abandoned: set[asyncio.Task] = set()

    async def __call__(self, call: Callable[[], Awaitable[T]], *, retry: bool = True,
                       extra_seconds: float = 0.0) -> T:
        """``await call()`` within the bound (plus ``extra_seconds``, e.g. for a large write);
        connection errors retried (if ``retry``) until it is spent."""
        loop = asyncio.get_running_loop()
        bound = self.seconds + extra_seconds
        deadline = loop.time() + bound
        failure = "no answer"
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DatabaseUnreachable(f"{failure} within {bound:g}s")
            task = asyncio.ensure_future(call())
            try:
                done, _ = await asyncio.wait({task}, timeout=remaining)
            except asyncio.CancelledError:
                self._abandon(task)
                raise
            if not done:
                self._abandon(task)
                raise DatabaseUnreachable(f"no answer within {bound:g}s")
            try:
                return task.result()
            except CONNECTION_ERRORS as exc:
                if not retry:
                    raise DatabaseUnreachable(short_reason(exc)) from None
                failure = short_reason(exc)
            await asyncio.sleep(min(0.1, max(deadline - loop.time(), 0)))

    def _abandon(self, task: asyncio.Task) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
