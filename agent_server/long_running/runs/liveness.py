"""Liveness bound to the database connection.

Each worker holds a session-level advisory lock on a key of its own, taken on
its LISTEN connection (which it keeps for its whole life), and registers the
key in the ``workers`` table. When the process dies its socket closes and
Postgres releases the lock; other workers (and a server that restarts) see
the lock free in ``pg_locks`` and claim the dead worker's runs in their next
maintenance pass (``claim_stale``) instead of waiting for the heartbeat to
go stale. The heartbeat stays the fallback for a hung process or a lost
machine, whose session (and so lock) may live on.

Races: a worker whose connection drops while its process lives loses the lock
until its listener reconnects and takes it again. Meanwhile its runs keep
running here, and any other worker may claim them; ``attempt_number`` is the
lease, so the first write (or heartbeat) after such a claim finds the lease
lost, stores nothing and stops that attempt. Two owners never both write.

Where session locks cannot be trusted (a transaction-mode pooler, such as
Lakebase's PgBouncer, between us and Postgres; or ``pg_locks`` not readable),
the worker does not register, logs that once, and its runs are taken over by
heartbeat only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from urllib.parse import urlsplit

import psycopg

from ..storage.database import Database, DatabaseTarget
from ..storage.store import Store

logger = logging.getLogger(__name__)

# Ports PgBouncer listens on by default; hosts named like Lakebase's (and Neon's) pooler endpoints.
_POOLER_PORTS = {6432}
_POOLER_HOST_MARK = "-pooler"


def pooler_in_path(target: DatabaseTarget) -> str | None:
    """Why ``target`` looks like a transaction-mode pooler, or None.

    ``databricks-ai-bridge`` connects to Lakebase's endpoint host with OAuth
    (its PgBouncer pooler takes only password roles), so only a URL can point
    at a pooler.
    """
    if target.backend != "url" or not target.url or "://" not in target.url:
        return None
    parts = urlsplit(target.url)
    host = (parts.hostname or "").lower()
    if _POOLER_HOST_MARK in host:
        return f"the database host {host} is a connection pooler"
    if parts.port in _POOLER_PORTS:
        return f"port {parts.port} is PgBouncer's"
    return None


class Liveness:
    """This worker's liveness lock: taken on every (re)connect of the LISTEN connection."""

    def __init__(self, db: Database, store: Store, worker_id: str):
        self.db = db
        self.store = store
        self.worker_id = worker_id
        # Positive, so its two halves compare with pg_locks' unsigned classid/objid.
        self.key = secrets.randbits(62) + 1
        self.enabled: bool | None = None  # decided on the first connection
        self._decided = asyncio.Event()
        self._held = False

    def state(self) -> str:
        """For /health: ``held``, ``not_held`` (reconnecting, or not decided yet) or ``heartbeat_only``."""
        if self.enabled is False:
            return "heartbeat_only"
        return "held" if self.enabled and self._held else "not_held"

    def use_locks(self) -> bool:
        """Whether claims may treat a free lock as a dead owner (else heartbeats only)."""
        return bool(self.enabled)

    async def wait_decided(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._decided.wait(), timeout)
        except TimeoutError:
            logger.warning("Liveness lock not taken after %.0fs; runs are protected by heartbeats until it is",
                           timeout)

    def connection_lost(self) -> None:
        self._held = False

    async def on_listen_connection(self, conn: psycopg.AsyncConnection) -> None:
        """Take the lock on the LISTEN connection (called after every connect)."""
        if self.enabled is False:
            return
        try:
            pid = await self._take(conn)
            if pid is None:
                self._held = False
                logger.warning("Liveness lock %d is held by another session; until the next reconnect "
                               "this worker's runs are protected by heartbeats only", self.key)
                if self.enabled:  # once that session ends, a registered free lock would look dead
                    await self.store.unregister_worker(self.worker_id)
                return
            if self.enabled is None:
                reason = await self._why_not_session_locks(conn, pid)
                if reason:
                    self._disable(reason)
                    return
                self.enabled = True
                await self.store.forget_dead_workers()
            await self.store.register_worker(self.worker_id, self.key)
            self._held = True
            logger.debug("Liveness lock %d held by backend %d", self.key, pid)
        except psycopg.OperationalError:
            raise  # the connection broke: the listener reconnects and calls us again
        except Exception as exc:
            if self.enabled is None:
                self._disable(f"{type(exc).__name__}: {exc}")
            else:
                self._held = False
                logger.warning("Could not take the liveness lock again (%s); heartbeats protect this "
                               "worker's runs until the next reconnect", exc)
                # Registered with a free lock, it would look dead to every other worker.
                with contextlib.suppress(Exception):
                    await self.store.unregister_worker(self.worker_id)
        finally:
            if self.enabled is not None:
                self._decided.set()

    async def _take(self, conn: psycopg.AsyncConnection) -> int | None:
        q = self.db.queries
        params = {"key": self.key}
        row = await (await conn.execute(q.take_liveness_lock, params)).fetchone()
        if row["held"]:
            return row["pid"]
        # An earlier session of ours still holds it: our side of that connection
        # broke but Postgres has not noticed yet. End it; the lock is ours alone.
        await conn.execute(q.free_liveness_lock, params)
        for _ in range(20):
            await asyncio.sleep(0.05)
            row = await (await conn.execute(q.take_liveness_lock, params)).fetchone()
            if row["held"]:
                return row["pid"]
        return None

    async def _why_not_session_locks(self, conn: psycopg.AsyncConnection, pid: int) -> str | None:
        """Why the lock would not follow this process's life, or None when it does."""
        reason = pooler_in_path(self.db.target)
        if reason:
            return reason
        q = self.db.queries
        # A transaction-mode pooler may run our next transaction on another backend,
        # and may run another client's on the backend that holds our lock.
        again = await (await conn.execute(q.backend_pid)).fetchone()
        holders = await self.store.liveness_lock_holders(self.key)
        if again["pid"] != pid or [h for h, _me in holders] != [pid] or any(me == pid for _h, me in holders):
            return "the lock is not kept by one session (a transaction-mode pooler?)"
        return None

    def _disable(self, reason: str) -> None:
        self.enabled = False
        self._held = False
        logger.warning("Session-level locks are not usable here (%s): runs of a worker that dies are "
                       "taken over when its heartbeat goes stale, not at once", reason)

    async def close(self) -> None:
        """Clean shutdown: forget the registration (the lock ends with the connection)."""
        if self.enabled:
            try:
                await self.store.unregister_worker(self.worker_id)
            except Exception as exc:
                logger.debug("Could not unregister worker %s: %s", self.worker_id, exc)
