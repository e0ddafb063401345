"""HTTP surface: ``LongRunningAgentServer``, the routes of MLflow's ``AgentServer``
plus background mode, retrieval, streaming with resume, cancel and delete.

A background request reads straight down the layers: this module validates
(:mod:`http_input`) and authorises it, the :class:`Worker` stores and starts
it, :func:`run_attempt` drives the attempt to its final write, the
:class:`HandlerInvoker` runs the handler, whose events the
:class:`AttemptWriter` stores through the worker's group commit, and a
tailing client follows them through the :class:`EventTail`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import inspect
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from . import http_input, idempotency
from .agent_runtime import AgentRuntime
from .attempts import LocalAttempts, RunLease
from . import conversations
from .conversation_routes import install_conversation_routes
from .database import Database, DatabaseTarget, DatabaseUnavailable, LakebaseTarget, resolve_target
from .embedded import EMBEDDED_URL_ENV, EmbeddedPostgres
from .errors import ApiError, install_error_handlers, not_found
from .header_checks import HeaderChecks
from .input_items import list_input_items
from .identity import owner_of, storable_headers
from .listing import list_page
from .liveness import Liveness
from .request_db import RequestStore, install_database_error_handler
from .shutdown import ShutdownSignal, on_forced_exit
from .stream_end import end_on_failure, shutting_down, until_stopped
from .models import Status
from .queries import Queries
from .response_object import response_from_row
from .settings import EngineSettings
from .store import ConversationBusy, ConversationGone, Store
from .tail import EventTail, TailClosed
from .tracing import TracingWarmUp
from .unstored import run_unstored
from .worker import Worker
from ..web import install_web_page

logger = logging.getLogger(__name__)

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class _Engine:
    """Everything that exists only while the database is connected."""

    db: Database
    store: Store
    tail: EventTail
    worker: Worker
    liveness: Liveness


class LongRunningAgentServer:
    """An agent server with durable background runs on Postgres.

    Constructor- and route-compatible with ``databricks_ai_bridge.long_running.LongRunningAgentServer``
    (an MLflow ``AgentServer`` subclass) and serving the same ``app``; see README "Server settings"
    for every argument. Not a subclass itself: MLflow and the agent are imported after start-up
    (agent_runtime.py), so ``/health`` answers in about a second. The database is chosen at
    start-up: ``database_url`` / ``DATABASE_URL``, else Lakebase (arguments or ``LAKEBASE_*``),
    else an embedded PostgreSQL.

    Override :meth:`transform_stream_event` to rewrite handler events before
    they are stored (e.g. replace SDK placeholder ids).
    """

    def __init__(
        self,
        agent_type: str = "ResponsesAgent",
        *,
        enable_chat_proxy: bool = False,
        db_instance_name: str | None = None,
        db_autoscaling_endpoint: str | None = None,
        db_project: str | None = None,
        db_branch: str | None = None,
        task_timeout_seconds: float = 3600.0,
        poll_interval_seconds: float = 1.0,
        db_statement_timeout_ms: int = 5000,
        cleanup_timeout_seconds: float = 7.0,
        heartbeat_interval_seconds: float = 3.0,
        heartbeat_stale_threshold_seconds: float = 10.0,
        database_url: str | None = None,
        db_schema: str = "agent_server",
        max_concurrent_tasks: int = 100,
        retention_seconds: float = 7 * 24 * 3600.0,
        stale_scan_interval_seconds: float = 1.0,
        max_request_bytes: int = 10 * 1024 * 1024,
        db_pool_max_size: int = 10,
        model_name: str | None = None,
        multitask_strategy: str = "enqueue",
        db_request_timeout_seconds: float = 2.0,
        shutdown_timeout_seconds: float = 5.0,
    ):
        if agent_type != "ResponsesAgent":
            raise ValueError(f"LongRunningAgentServer only supports agent_type 'ResponsesAgent', got {agent_type!r}")
        if not cleanup_timeout_seconds > 0:
            raise ValueError(f"cleanup_timeout_seconds must be a positive number, got {cleanup_timeout_seconds!r}")
        if not (isinstance(db_pool_max_size, int) and db_pool_max_size >= 2):
            raise ValueError(f"db_pool_max_size must be an integer of at least 2, got {db_pool_max_size!r}")
        self.settings = EngineSettings(
            task_timeout_seconds=task_timeout_seconds,
            poll_interval_seconds=poll_interval_seconds,
            db_statement_timeout_ms=db_statement_timeout_ms,
            heartbeat_interval_seconds=heartbeat_interval_seconds,
            heartbeat_stale_threshold_seconds=heartbeat_stale_threshold_seconds,
            max_concurrent_tasks=max_concurrent_tasks,
            db_schema=db_schema,
            retention_seconds=retention_seconds,
            stale_scan_interval_seconds=stale_scan_interval_seconds,
            max_request_bytes=max_request_bytes,
            db_request_timeout_seconds=db_request_timeout_seconds,
            shutdown_timeout_seconds=shutdown_timeout_seconds,
        )
        if multitask_strategy not in conversations.STRATEGIES:
            raise ValueError(f"multitask_strategy must be one of {', '.join(conversations.STRATEGIES)}, "
                             f"got {multitask_strategy!r}")
        # What a message does while its conversation's previous response still runs (per request:
        # the multitask_strategy field).
        self.multitask_strategy = multitask_strategy
        self.model_name = model_name or os.environ.get("DATABRICKS_APP_NAME") or "agent"
        self._database_url = database_url
        lakebase_args = (db_instance_name, db_autoscaling_endpoint, db_project, db_branch)
        self._lakebase = LakebaseTarget(*lakebase_args) if any(lakebase_args) else None
        self._db_pool_max_size = db_pool_max_size
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._engine: _Engine | None = None
        self._stopping = False  # SIGTERM came (or the lifespan ended): new work is refused
        self._stop_event = asyncio.Event()  # the same, for streams to wait on
        self._handover: asyncio.Future | None = None  # worker.close(), started at SIGTERM
        self._target: DatabaseTarget | None = None
        self._unavailable_reason = "the database connection is still starting"
        self._serve_web_page = not enable_chat_proxy  # with the proxy, `/` is upstream's chat app
        self.agent_type = agent_type
        self._runtime = AgentRuntime()
        self._tracing = TracingWarmUp()
        self._invoker: Any = None  # the HandlerInvoker, built once MLflow and the agent are imported
        self._validator: Any = None  # MLflow's request validator, likewise
        self.app = _chat_proxy_app(agent_type) if enable_chat_proxy else FastAPI(title="Agent Server")
        self._setup_routes()
        install_error_handlers(self.app)
        install_database_error_handler(self.app)
        self.app.add_middleware(HeaderChecks)
        self._shutdown = ShutdownSignal(self.settings.shutdown_timeout_seconds)
        self.app.router.lifespan_context = self._lifespan

    # ----- extension point ---------------------------------------------------

    def transform_stream_event(self, event: dict, response_id: str) -> dict:
        """Rewrite one handler event before it is stored. Returns the event."""
        return event

    def import_handlers_after_start(self, load: Callable[[], Any]) -> None:
        """Call ``load`` (which imports the agent and registers its handlers) in a thread once the
        server has started and MLflow is imported: ``/health``, reading and cancelling stored
        responses and claiming a dead worker's runs do not wait for it; running a handler does."""
        self._runtime.load = load

    @property
    def validator(self) -> Any:
        """MLflow's ``ResponsesAgentValidator``, as on MLflow's ``AgentServer`` (imports MLflow if the
        server has not yet)."""
        if self._validator is None:
            from .handler import ResponsesAgentValidator

            self._validator = ResponsesAgentValidator()
        return self._validator

    async def _request_validator(self) -> Any:
        """The validator, once MLflow is imported (without blocking the event loop on the import)."""
        if self._validator is None:
            await self._runtime.mlflow()
        return self.validator

    async def _run_handler(self, lease: RunLease, writer: Any) -> None:
        """Run one attempt's handler, once the agent's handlers are registered."""
        if self._invoker is None:
            await self._runtime.agent()
            handler = await self._runtime.mlflow()
            self._invoker = handler.HandlerInvoker(await self._request_validator(), self.transform_stream_event,
                                                   self._tracing.ready)
        await self._invoker(lease, writer)

    # ----- lifecycle -----------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, _app):
        self._stopping, self._handover, self._stop_event = False, None, asyncio.Event()
        # First thing: a SIGTERM during start-up is bounded by the watchdog too.
        self._shutdown.install(self._begin_shutdown)
        connector = asyncio.create_task(self._connect_until_ready(), name="db-connect")
        self._runtime.start()
        self._tracing.start(after=self._runtime.mlflow)
        # Wait for the first attempt, so a healthy server accepts background work at once.
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect_done()), timeout=30)
        except TimeoutError:
            logger.warning("Database not ready after 30s; background mode answers 503 until it is")
        try:
            yield
        finally:
            watchdog = self._shutdown.bound_the_rest()
            connector.cancel()
            await asyncio.gather(connector, return_exceptions=True)
            self._begin_shutdown()
            if self._engine is not None:
                engine, self._engine = self._engine, None
                async def close_connections() -> None:
                    await engine.liveness.close()
                    await engine.db.close()

                await self._shutdown.within_bound(self._handover, close_connections)
            # Last: the warm-up thread cannot be interrupted (after SIGTERM the watchdog bounds it).
            await self._tracing.stop()
            self._runtime.stop()
            if watchdog is not None:
                watchdog.cancel()  # done in time; what follows is uvicorn's own exit
            self._shutdown.uninstall()

    def _begin_shutdown(self) -> None:
        """SIGTERM (or the lifespan's end): end live streams now and hand our runs to other workers."""
        self._stopping = True
        self._stop_event.set()
        engine = self._engine
        if engine is None or self._handover is not None:
            return  # (called again at the lifespan's end: an engine connected meanwhile is closed then)
        engine.tail.close()
        self._handover = asyncio.ensure_future(engine.worker.close())

    async def _first_connect_done(self) -> None:
        while self._engine is None and self._unavailable_reason == "the database connection is still starting":
            await asyncio.sleep(0.02)

    async def _connect_until_ready(self) -> None:
        try:
            self._target = resolve_target(database_url=self._database_url, lakebase=self._lakebase)
        except DatabaseUnavailable as exc:
            self._unavailable_reason = str(exc)
            logger.error("Background mode disabled: %s", exc)
            return
        logger.info("Background runs stored in %s, schema %s", self._target.describe(), self.settings.db_schema)
        delay = 1.0
        while True:
            try:
                self._engine = await self._open_engine(self._target)
                logger.info("Database ready; worker %s takes up to %d concurrent runs",
                            self.worker_id, self.settings.max_concurrent_tasks)
                return
            except Exception as exc:
                self._unavailable_reason = f"cannot use {self._target.describe()}: {exc}"
                logger.error("Background mode unavailable (%s); retrying in %.0fs", self._unavailable_reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _open_engine(self, target: DatabaseTarget) -> _Engine:
        db = Database(
            target=target,
            queries=Queries(self.settings.db_schema),
            statement_timeout_ms=self.settings.db_statement_timeout_ms,
            pool_max_size=self._db_pool_max_size,
        )
        await db.open()
        # Requests wait at most db_request_timeout_seconds; the worker's writes retry on their own terms.
        store = RequestStore(db, self.settings.db_request_timeout_seconds)
        attempts = LocalAttempts()
        tail = EventTail(store, self.settings.poll_interval_seconds, runs_here=attempts.__contains__)
        # The worker's writes (and the liveness registration) retry on their own terms.
        plain_store = Store(db)
        liveness = Liveness(db, plain_store, self.worker_id)
        worker = Worker(store=plain_store, tail=tail, settings=self.settings, worker_id=self.worker_id,
                        handler=self._run_handler, attempts=attempts, dead_owners_by_lock=liveness.use_locks,
                        request_model_loaded=self._runtime.mlflow)
        db.subscribe(db.queries.events_channel, tail.on_notify)
        db.subscribe(db.queries.control_channel, worker.on_control)
        db.on_listener_reconnect(tail.wake_all)
        db.on_listener_reconnect(worker.wake_queue)
        db.on_listener_connect(liveness.on_listen_connection, liveness.connection_lost)
        # Runs this worker starts are bound to its lock: take it before the first one.
        await liveness.wait_decided(timeout=5.0)
        worker.start()
        return _Engine(db, store, tail, worker, liveness)

    def _require_engine(self) -> _Engine:
        if self._stopping:
            raise shutting_down()
        if self._engine is None:
            raise ApiError(503, f"Background mode is unavailable: {self._unavailable_reason}.",
                           code="background_unavailable")
        return self._engine

    # ----- routes --------------------------------------------------------------

    def _setup_routes(self) -> None:
        # MLflow's AgentServer routes: /invocations, /responses, /agent/info, /health.
        @self.app.post("/invocations")
        async def invocations(request: Request):
            return await self._handle_invocations_request(request)

        @self.app.post("/responses")
        async def create_response(request: Request):
            """As OpenAI's ``client.responses.create(...)``."""
            return await self._handle_invocations_request(request)

        @self.app.get("/agent/info")
        async def agent_info() -> dict[str, Any]:
            return {"name": os.environ.get("DATABRICKS_APP_NAME", "mlflow_agent_server"), "use_case": "agent",
                    "mlflow_version": _mlflow_version(), "agent_api": "responses"}

        @self.app.get("/health")
        async def health() -> JSONResponse:
            return JSONResponse(await self._health())

        @self.app.get("/responses")
        async def list_responses(request: Request):
            return await list_page(self._require_engine().store, owner_of(request.headers), request.query_params)

        if self._serve_web_page:
            install_web_page(self.app)

        install_conversation_routes(self.app, lambda: self._require_engine().store, self._request_validator,
                                    self.settings.max_request_bytes)

        @self.app.get("/responses/{response_id}")
        async def retrieve(response_id: str, request: Request):
            return await self._retrieve(response_id, request)

        @self.app.get("/responses/{response_id}/input_items")
        async def input_items(response_id: str, request: Request):
            engine, owner = self._engine_and_owner(response_id, request)
            row = await engine.store.get_response(response_id, owner)
            if row is None:
                raise not_found(response_id)
            params = request.query_params
            return list_input_items(row.request, response_id, limit=params.get("limit"), after=params.get("after"),
                                    order=params.get("order"))

        @self.app.post("/responses/{response_id}/cancel")
        async def cancel(response_id: str, request: Request):
            _engine, _owner, row = await self._cancel(response_id, request, "cancelled by the client")
            return response_from_row(row)

        @self.app.delete("/responses/{response_id}")
        async def delete(response_id: str, request: Request):
            # Cancel first, so a running handler stops and tailers get a terminal event.
            engine, owner, _row = await self._cancel(response_id, request, "deleted by the client")
            await engine.store.delete_response(response_id, owner)
            return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def _cancel(self, response_id: str, request: Request, reason: str):
        """End a queued or running response (a finished one is left as it is)."""
        engine, owner = self._engine_and_owner(response_id, request)
        row = await engine.store.finalize(response_id, status=Status.CANCELLED, owner=owner)
        if row is None:
            raise not_found(response_id)
        # The owner may be this worker: stop it now rather than on the NOTIFY.
        engine.worker.stop_local(response_id, reason)
        engine.worker.forget_queued(response_id)
        return engine, owner, row

    def _engine_and_owner(self, response_id: str, request: Request) -> tuple[_Engine, str]:
        http_input.check_response_id(response_id)
        return self._require_engine(), owner_of(request.headers)

    async def _health(self) -> dict[str, Any]:
        database: dict[str, Any] = {"backend": self._target.backend if self._target else None}
        engine = self._engine
        if engine is None:
            database |= {"status": "unavailable", "error": self._unavailable_reason}
        else:
            try:
                await engine.store.ping()  # bounded: a frozen database is "degraded" within the bound
                database["status"] = "connected"
            except Exception as exc:
                database |= {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"}
        return {
            "status": "healthy" if database["status"] == "connected" else "degraded",
            "database": database,
            "background_mode": database["status"] == "connected",
            # Runs that start while MLflow tracing warms up (seconds after start-up) are not traced.
            "tracing": "ready" if self._tracing.done else "warming_up",
            "agent": "ready" if self._runtime.agent_ready else "importing",
            "worker": {
                "id": self.worker_id,
                "running": engine.worker.running_count if engine else 0,
                "liveness_lock": engine.liveness.state() if engine else "not_held",
                "max_concurrent_tasks": self.settings.max_concurrent_tasks,
            },
        }

    # ----- POST /responses, /invocations -------------------------------------

    async def _handle_invocations_request(self, request: Request):
        headers = dict(request.headers)
        data = await http_input.read_json_body(request, self.settings.max_request_bytes)
        background = http_input.flag(data.pop("background", None), "background")
        stream = http_input.flag(data.pop("stream", None), "stream")
        conversation = data.pop("conversation", None)
        previous_response_id = data.pop("previous_response_id", None)
        strategy = conversations.strategy_of(data.pop(conversations.STRATEGY_FIELD, None), self.multitask_strategy)
        data, store, ignored = http_input.request_fields(data)
        if background and not store:
            raise ApiError(400, "A background response must be stored: drop 'store': false, or 'background'.",
                           code="invalid_parameter", param="store")
        try:
            request_data = (await self._request_validator()).validate_and_convert_request(data)
        except ValueError as exc:
            raise ApiError(400, f"Invalid request body: {str(exc)[:2000]}", code="invalid_request") from None
        request_dict = request_data.model_dump(mode="json", exclude_none=True)
        http_input.check_storable(request_dict)
        answer_headers = {"x-ignored-fields": ",".join(ignored)} if ignored else {}
        turn = None
        if conversation is not None or previous_response_id is not None or conversations.session_key_of(request_dict):
            turn, request_dict = await self._conversation_turn(request_dict, headers, conversation=conversation,
                                                               previous_response_id=previous_response_id,
                                                               strategy=strategy, store=store,
                                                               background=background)
        if background:
            engine = self._require_engine()
            response = await self._submit(engine, request_dict, headers, background=True, turn=turn)
            if stream:
                return self._sse(engine, response["id"], owner_of(headers), after=-1, headers=answer_headers)
            # The Response as stored (queued or in_progress), as OpenAI answers a background
            # create: no second read of the row on the accept path.
            return JSONResponse(response, headers=answer_headers)
        return await self._standard(request_dict, stream, headers, store, answer_headers, turn)

    async def _conversation_turn(self, request_dict: dict, headers: dict[str, str], *, conversation: Any,
                                 previous_response_id: Any, strategy: str, store: bool,
                                 background: bool) -> tuple[conversations.Turn | None, dict]:
        """The stored conversation a request joins, and its request; an unstored request joins none
        and gets its history in its input now."""
        owner = owner_of(headers)
        if self._engine is None:
            if conversation is None and previous_response_id is None:
                return None, request_dict  # a session id alone: without the database, no memory
            field = "conversation" if conversation is not None else "previous_response_id"
            raise ApiError(503, f"{field} needs the database, which is unavailable: {self._unavailable_reason}.",
                           code="background_unavailable")
        found_by = dict(conversation=conversation, previous_response_id=previous_response_id, request=request_dict)
        if not store:
            history = await conversations.unstored_history(self._engine.store, owner, **found_by)
            return None, {**request_dict, "input": [*history, *(request_dict.get("input") or [])]}
        turn = await conversations.turn_for(self._engine.store, owner, strategy=strategy, **found_by)
        if turn is not None and turn.strategy == "interrupt" and not await self._is_retry(
                self._engine, owner, headers, request_dict, background):
            # (A retry of an interrupting request must not cancel the response its first try created.)
            await self._interrupt(self._engine, turn.conversation_id)
        return turn, request_dict

    async def _interrupt(self, engine: _Engine, conversation_id: str) -> None:
        """Cancel a conversation's unfinished responses (their committed output joins it)."""
        for response_id, _status in await engine.store.unfinished_turns(conversation_id):
            await engine.store.finalize(response_id, status=Status.CANCELLED)
            engine.worker.stop_local(response_id, "interrupted by a newer message in its conversation")
            engine.worker.forget_queued(response_id)

    async def _is_retry(self, engine: _Engine, owner: str, headers: dict[str, str], request_dict: dict,
                        background: bool) -> bool:
        """Whether the request repeats an earlier one by its Idempotency-Key."""
        key = idempotency.key_of(headers)
        return key is not None and await idempotency.earlier_response(
            engine.store, owner, key, request_dict, background) is not None

    async def _current_response(self, engine: _Engine, response_id: str, owner: str) -> dict[str, Any]:
        """A stored response's Response object as it is now."""
        row = await engine.store.get_response_status(response_id, owner)
        if row is None:
            raise not_found(response_id)
        return response_from_row(row)

    async def _submit(self, engine: _Engine, request_dict: dict, headers: dict[str, str], *, background: bool,
                      turn: conversations.Turn | None = None) -> dict[str, Any]:
        """Store and start (or queue) a response; its Response object as first stored (with an
        Idempotency-Key already used: the first response, as it is now)."""
        owner = owner_of(headers)
        key = idempotency.key_of(headers)
        if key is not None:
            earlier = await idempotency.earlier_response(engine.store, owner, key, request_dict, background)
            if earlier is not None:
                return await self._current_response(engine, earlier.response_id, owner)
        response_id = f"resp_{uuid.uuid4().hex}"
        try:
            # Bounded like every request (plus a second per MB: storing a large input takes time);
            # not retried: the insert may have landed.
            length = headers.get("content-length", "")
            body_mb = int(length) / 1e6 if length.isdigit() else 0.0
            return await engine.store.bounded(lambda: engine.worker.submit(
                response_id=response_id,
                owner=owner_of(headers),
                request=request_dict,
                headers=headers,
                stored_headers=storable_headers(headers),
                model=self.model_name,
                background=background,
                turn=turn,
                idempotency_key=key,
            ), retry=False, extra_seconds=body_mb)
        except ApiError:
            raise
        except ConversationBusy as busy:
            raise ApiError(409, f"Conversation {turn.conversation_id} already has an unfinished response: "
                           f"{busy.response_id} is {busy.status.value}. Wait for it, cancel it, or send "
                           f"{conversations.STRATEGY_FIELD} 'enqueue' (run after it) or 'interrupt' (cancel it).",
                           code="conversation_busy", param=conversations.STRATEGY_FIELD) from None
        except ConversationGone:
            raise conversations.conversation_not_found(turn.conversation_id) from None
        except psycopg.errors.UniqueViolation:
            # A concurrent request with the same Idempotency-Key created it first.
            earlier = await idempotency.earlier_response(engine.store, owner, key, request_dict, background)
            if earlier is None:
                raise ApiError(409, "A request with the same Idempotency-Key was created and deleted meanwhile.",
                               code="idempotency_key_reused", param="Idempotency-Key") from None
            return await self._current_response(engine, earlier.response_id, owner)
        except Exception as exc:
            logger.exception("Could not store the response")
            raise ApiError(503, f"Background mode is unavailable: the database rejected the request ({exc}).",
                           code="background_unavailable") from None

    async def _standard(self, request_dict: dict, stream: bool, headers: dict[str, str], store: bool,
                        answer_headers: dict[str, str], turn: conversations.Turn | None = None):
        """A standard request: stored and run by the engine like a background one (so it can be
        retrieved and survives a crash), answered when it ends; unstored if asked, or if no database."""
        engine = self._engine if store else None
        if engine is not None:
            try:
                response_id = (await self._submit(engine, request_dict, headers, background=False, turn=turn))["id"]
            except ApiError as exc:
                if exc.status != 503 or turn is not None:
                    raise  # a refused turn or reused Idempotency-Key, or a turn whose history only the database has
                engine = None  # a standard request never depends on the database: answer unstored
        stored_headers = {**answer_headers, "x-response-stored": "true" if engine is not None else "false"}
        owner = owner_of(headers)
        if engine is not None:
            if stream:
                return self._sse(engine, response_id, owner, after=-1, headers=stored_headers)
            final = await self._final_response(engine, response_id, owner)
            return JSONResponse(final, headers=stored_headers)
        lease = RunLease(response_id=f"resp_{uuid.uuid4().hex}", attempt_number=1, request=request_dict,
                         headers=headers, created_at=time.time(),
                         deadline=time.time() + self.settings.task_timeout_seconds, model=self.model_name,
                         next_sequence=0, metadata=request_dict.get("metadata") or {}, background=False)
        events = run_unstored(lease, self._run_handler)
        if stream:
            async def frames() -> AsyncIterator[str]:
                async with aclosing(events) as stream_events:
                    async for data in stream_events:
                        yield f"data: {data}\n\n"

            # Not stored, so not resumable; still, a shutdown ends it with an error frame, not a cut.
            chunks = end_on_failure(until_stopped(frames(), self._stop_event), lease.response_id)
            return StreamingResponse(chunks, media_type="text/event-stream", headers={**_SSE_HEADERS, **stored_headers})
        last = None
        async with aclosing(events) as stream_events:
            async for data in stream_events:
                last = data
        return JSONResponse(json.loads(last)["response"], headers=stored_headers)

    async def _final_response(self, engine: _Engine, response_id: str, owner: str) -> dict[str, Any]:
        """Wait for a stored response's terminal event; its Response object."""
        async def exists() -> bool:
            return await engine.store.get_response_status(response_id, owner) is not None

        try:
            async with aclosing(engine.tail.tail_batches(response_id, 0, exists)) as batches:
                async for batch in batches:
                    if batch and batch[-1].is_terminal:
                        return json.loads(batch[-1].data)["response"]
        except TailClosed:
            raise shutting_down() from None
        raise not_found(response_id)  # deleted while it ran

    # ----- GET /responses/{id} -----------------------------------------------

    async def _retrieve(self, response_id: str, request: Request):
        params = request.query_params
        stream = http_input.flag(params.get("stream"), "stream")
        starting_after = http_input.cursor(params.get("starting_after"))
        if starting_after is not None and not stream:
            raise ApiError(400, "starting_after is only supported together with stream=true.",
                           code="invalid_parameter", param="starting_after")
        engine, owner = self._engine_and_owner(response_id, request)
        row = await engine.store.get_response_status(response_id, owner)
        if row is None:
            raise not_found(response_id)
        if stream:
            after = -1 if starting_after is None else starting_after
            if after > row.last_sequence:
                # Never a number this response has sent (even running: events are visible only once
                # stored), so no tail could ever reach it: refused in every state.
                raise ApiError(400, f"starting_after={after} is past the last event ({row.last_sequence}) "
                               f"of this {row.status.value} response; use a sequence_number you received.",
                               code="invalid_parameter", param="starting_after")
            if after == row.last_sequence and row.status.is_terminal:
                # The client already has the terminal event (it lost only [DONE]): there is nothing
                # after it, so end now; tailing would wait forever for an event that never comes.
                return StreamingResponse(iter(["data: [DONE]\n\n"]), media_type="text/event-stream",
                                         headers=_SSE_HEADERS)
            return self._sse(engine, response_id, owner, after)
        output = None
        if not row.status.is_terminal and row.attempt_number > 0:
            output = await engine.store.attempt_output_items(response_id, row.attempt_number)
        return response_from_row(row, output)

    def _sse(self, engine: _Engine, response_id: str, owner: str, after: int,
             headers: dict[str, str] | None = None) -> StreamingResponse:
        async def exists() -> bool:
            return await engine.store.get_response_status(response_id, owner) is not None

        async def frames() -> AsyncIterator[str]:
            ended = False
            # One chunk per batch of available events: one socket write, not one per event.
            async with aclosing(engine.tail.tail_batches(response_id, after, exists)) as batches:
                async for batch in batches:
                    if batch is None:
                        yield ": keep-alive\n\n"
                        continue
                    ended = batch[-1].is_terminal
                    yield "".join([f"data: {event.data}\n\n" for event in batch])
            if not ended:
                raise not_found(response_id)  # the tail ended without a terminal event: deleted

        # A tail that cannot go on (deleted, database gone, shutdown) ends with an error frame and [DONE].
        return StreamingResponse(end_on_failure(frames(), response_id), media_type="text/event-stream",
                                 headers={**_SSE_HEADERS, **(headers or {})})

    # ----- CLI -------------------------------------------------------------------

    def run(self, app_import_string: str, host: str = "0.0.0.0", argv: list[str] | None = None) -> None:
        """Serve with MLflow's flags (``--port``, ``--workers``, ``--reload``).

        Unknown flags are ignored so an entry point can add its own. With no
        database configured, an embedded PostgreSQL is started here, before
        uvicorn forks its workers, shared by all of them and stopped on exit.
        """
        parser = argparse.ArgumentParser(description="Start the agent server")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--reload", action="store_true")
        args, _unknown = parser.parse_known_args(argv)
        embedded = None
        try:
            target = resolve_target(database_url=self._database_url, lakebase=self._lakebase)
        except DatabaseUnavailable:
            target = None  # each worker reports why, in /health and on 503s
        if target is not None and target.backend == "embedded":
            embedded = EmbeddedPostgres(target.embedded_dir)
            os.environ[EMBEDDED_URL_ENV] = embedded.start()
            if args.workers == 1 and not args.reload:
                on_forced_exit(embedded.stop)  # the app runs in this process
            os.environ["EMBEDDED_POSTGRES_DIR"] = str(embedded.data_dir)
        options: dict[str, Any] = {}
        if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
            # A spawned worker answers uvicorn's health pings only after importing the
            # app (MLflow, agent SDKs: several seconds on a busy machine); uvicorn's
            # 5s default would kill and respawn it forever.
            options["timeout_worker_healthcheck"] = 120
        # Open requests get half the shutdown bound (live streams end at once on
        # SIGTERM, see shutdown.py); handing runs over and closing the pool, the rest.
        options["timeout_graceful_shutdown"] = max(self.settings.shutdown_timeout_seconds / 2, 0.5)
        if embedded is not None and threading.current_thread() is threading.main_thread():
            # uvicorn re-raises a SIGTERM it handled once it has shut down; with the
            # default action that ends the process here, before the embedded
            # PostgreSQL is stopped. As an exception it unwinds through `finally`.
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            uvicorn.run(app_import_string, host=host, port=args.port, workers=args.workers, reload=args.reload,
                        **options)
        finally:
            if embedded is not None:
                embedded.stop()


def _chat_proxy_app(agent_type: str) -> FastAPI:
    """MLflow's app with its chat-proxy middleware, which forwards what no route matches to the
    chat UI; our routes replace its own. This imports MLflow at construction: with the proxy, the
    server starts as slowly as MLflow's."""
    from mlflow.genai.agent_server import AgentServer

    app = AgentServer(agent_type, enable_chat_proxy=True).app
    theirs = {"/invocations", "/responses", "/agent/info", "/health"}
    app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) not in theirs]
    return app


def _mlflow_version() -> str:
    """MLflow's version without importing it."""
    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # the exit status the default action would give


