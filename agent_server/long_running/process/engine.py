"""The engine's database-backed parts, connected in the background and handed over at shutdown.

The server answers before the database is ready (``/health`` says why it is
not), so connecting runs as a task that retries with back-off. Requests ask
:meth:`EngineConnection.require` for the :class:`Engine`: a 503 in words while
there is none, and once SIGTERM came, the shutdown answer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..errors import ApiError, shutting_down
from ..events.tail import EventTail
from ..memory.access import MemoryUnavailable
from ..memory.book import MemoryBook, open_memory_book
from ..runs.attempt import Handler
from ..runs.leases import LocalAttempts
from ..runs.liveness import Liveness
from ..runs.worker import Worker
from ..settings import EngineSettings
from ..storage.bounded import Deadline
from ..storage.database import Database, DatabaseTarget, DatabaseUnavailable, LakebaseTarget, resolve_target
from ..storage.queries import Queries
from ..storage.store import Store, WebhookFanout
from ..webhooks.deliveries import WebhookDeliveries
from ..webhooks.settings import WebhookSettings

logger = logging.getLogger(__name__)


@dataclass
class Engine:
    """Everything that exists only while the database is connected."""

    db: Database
    store: Store  # the routes' and tails' store: every call within db_request_timeout_seconds
    tail: EventTail
    worker: Worker
    liveness: Liveness
    webhooks: WebhookDeliveries | None  # None: no webhooks configured
    memory: MemoryBook  # long-term memory, on the routes' store


class EngineConnection:
    """This process's :class:`Engine`, once connected, and the reason while there is none."""

    def __init__(self, settings: EngineSettings, *, worker_id: str, handler: Handler,
                 request_model_loaded, database_url: str | None, lakebase: LakebaseTarget | None,
                 webhooks: WebhookSettings = WebhookSettings()):
        self.settings = settings
        self.webhook_settings = webhooks
        self.worker_id = worker_id
        self._handler = handler
        self._request_model_loaded = request_model_loaded
        self._database_url = database_url
        self._lakebase = lakebase
        self.engine: Engine | None = None
        self.target: DatabaseTarget | None = None
        self.unavailable_reason = "the database connection is still starting"
        self.stopping = asyncio.Event()  # SIGTERM came (or the lifespan ended): new work is refused
        self._first_attempt = asyncio.Event()  # the first connection attempt ended, either way
        self._handover: asyncio.Future | None = None  # worker and webhooks closing, started at SIGTERM

    def reset(self) -> None:
        """A new lifespan (tests start one app more than once): nothing connected, nothing stopping."""
        self.engine, self.target, self._handover = None, None, None
        self.unavailable_reason = "the database connection is still starting"
        self.stopping, self._first_attempt = asyncio.Event(), asyncio.Event()

    def require(self) -> Engine:
        """The engine, or the ApiError a request gets while there is none."""
        if self.stopping.is_set():
            raise shutting_down()
        if self.engine is None:
            raise ApiError(503, f"Background mode is unavailable: {self.unavailable_reason}.",
                           code="background_unavailable")
        return self.engine

    def memory_book(self) -> MemoryBook:
        """The engine's memory book, or :class:`MemoryUnavailable` saying why there is none."""
        if self.stopping.is_set():
            raise MemoryUnavailable("the server is shutting down")
        if self.engine is None:
            raise MemoryUnavailable(f"no database ({self.unavailable_reason})")
        return self.engine.memory

    async def wait_first_attempt(self, timeout: float) -> None:
        """Until the first connection attempt has ended (or ``timeout``), so a server that is
        healthy at once accepts background work at once."""
        try:
            await asyncio.wait_for(self._first_attempt.wait(), timeout)
        except TimeoutError:
            logger.warning("Database not ready after %gs; background mode answers 503 until it is", timeout)

    async def connect_until_ready(self) -> None:
        """Connect, retrying with back-off (a task the lifespan starts and cancels)."""
        try:
            self.target = resolve_target(database_url=self._database_url, lakebase=self._lakebase)
        except DatabaseUnavailable as exc:
            self.unavailable_reason = str(exc)
            logger.error("Background mode disabled: %s", exc)
            self._first_attempt.set()
            return
        logger.info("Background runs stored in %s, schema %s", self.target.describe(), self.settings.db_schema)
        delay = 1.0
        while True:
            try:
                self.engine = await self._open(self.target)
                self._first_attempt.set()
                logger.info("Database ready; worker %s takes up to %d concurrent runs",
                            self.worker_id, self.settings.max_concurrent_tasks)
                self._log_webhooks()
                return
            except Exception as exc:
                self.unavailable_reason = f"cannot use {self.target.describe()}: {exc}"
                self._first_attempt.set()
                logger.error("Background mode unavailable (%s); retrying in %.0fs", self.unavailable_reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _log_webhooks(self) -> None:
        webhooks = self.webhook_settings
        if webhooks.enabled:
            logger.info("Webhooks: %s to %d URL(s), retried for up to %g h",
                        ", ".join(webhooks.event_types), len(webhooks.urls), webhooks.retry_hours)
        else:
            level = logging.WARNING if webhooks.half_set else logging.INFO
            logger.log(level, "Webhooks off: %s", webhooks.off_reason)

    async def _open(self, target: DatabaseTarget) -> Engine:
        settings = self.settings
        db = Database(target=target, queries=Queries(settings.db_schema),
                      statement_timeout_ms=settings.db_statement_timeout_ms, pool_max_size=settings.db_pool_max_size)
        await db.open()
        webhooks = WebhookDeliveries(self.webhook_settings, poll_interval_seconds=settings.poll_interval_seconds,
                                     retention_seconds=settings.retention_seconds) \
            if self.webhook_settings.enabled else None
        # Both stores end responses (the worker's runs; the routes' cancels), queueing their webhooks.
        fanout = webhooks.fanout() if webhooks else WebhookFanout()
        # Requests wait at most db_request_timeout_seconds; the worker's writes retry on their own terms.
        request_store = Store(db, Deadline(settings.db_request_timeout_seconds), webhooks=fanout)
        attempts = LocalAttempts()
        tail = EventTail(request_store, settings.poll_interval_seconds, runs_here=attempts.__contains__)
        worker_store = Store(db, webhooks=fanout)
        memory = await open_memory_book(request_store, worker_store, settings)
        liveness = Liveness(db, worker_store, self.worker_id)
        worker = Worker(store=worker_store, tail=tail, settings=settings, worker_id=self.worker_id,
                        handler=self._handler, attempts=attempts, dead_owners_by_lock=liveness.use_locks,
                        request_model_loaded=self._request_model_loaded)
        db.subscribe(db.queries.events_channel, tail.on_notify)
        db.subscribe(db.queries.control_channel, worker.on_control)
        db.on_listener_reconnect(tail.wake_all)
        db.on_listener_reconnect(worker.wake_queue)
        db.on_listener_connect(liveness.on_listen_connection, liveness.connection_lost)
        # Runs this worker starts are bound to its lock: take it before the first one.
        await liveness.wait_decided(timeout=5.0)
        worker.start()
        if webhooks:
            webhooks.start(worker_store)
        return Engine(db, request_store, tail, worker, liveness, webhooks, memory)

    def begin_shutdown(self) -> None:
        """SIGTERM (or the lifespan's end): end live streams now and hand our runs to other workers."""
        self.stopping.set()
        engine = self.engine
        if engine is None or self._handover is not None:
            return  # (called again at the lifespan's end: an engine connected meanwhile is closed then)
        engine.tail.close()
        closing = [engine.worker.close()] + ([engine.webhooks.close()] if engine.webhooks else [])
        self._handover = asyncio.gather(*closing)

    def take_for_close(self) -> tuple[Engine | None, asyncio.Future | None]:
        """The engine to close at the lifespan's end (and the hand-over to wait for); forgotten here."""
        engine, self.engine = self.engine, None
        return engine, self._handover
