"""HTTP surface: ``LongRunningAgentServer``, MLflow's ``AgentServer`` plus
background mode, retrieval, streaming with resume, cancel and delete.

A background request reads straight down the layers: this module validates
and authorises, the :class:`Runner` stores and starts it, the handler's
events go through the :class:`AttemptWriter` into the store, and a tailing
client is woken by the :class:`EventLog`.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import re
import signal
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import mlflow
import uvicorn
from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from mlflow.genai.agent_server import AgentServer, get_invoke_function, get_stream_function, set_request_headers
from mlflow.tracing.constant import SpanAttributeKey

from .database import Database, DatabaseTarget, DatabaseUnavailable, LakebaseTarget, resolve_target
from .embedded import EMBEDDED_URL_ENV, EmbeddedPostgres
from .errors import ApiError, install_error_handlers, not_found
from .event_log import AttemptWriter, EventLog
from .identity import owner_of, storable_headers
from .listing import list_page
from .models import Status
from .queries import Queries
from .response_object import response_from_row
from .runner import RunLease, Runner
from .settings import EngineSettings
from .store import Store
from .tracing import warm_up_tracing
from ..web import install_web_page

logger = logging.getLogger(__name__)

_RESPONSE_ID = re.compile(r"^resp_[0-9a-f]{32}$")
_MAX_SEQUENCE = 2**31 - 1
_RETURN_TRACE_HEADER = "x-mlflow-return-trace-id"
_NO_OP_TRACE_ID = "MLFLOW_NO_OP_SPAN_TRACE_ID"


@dataclass
class _Engine:
    """Everything that exists only while the database is connected."""

    db: Database
    store: Store
    log: EventLog
    runner: Runner


class LongRunningAgentServer(AgentServer):
    """MLflow ``AgentServer`` with durable background runs on Postgres.

    Constructor-compatible with ``databricks_ai_bridge.long_running.LongRunningAgentServer``;
    see README "Server settings" for every argument. The database is chosen at
    start-up: ``database_url`` / ``DATABASE_URL``, else Lakebase (arguments or
    ``LAKEBASE_*``), else an embedded PostgreSQL.

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
        )
        self.model_name = model_name or os.environ.get("DATABRICKS_APP_NAME") or "agent"
        self._database_url = database_url
        lakebase_args = (db_instance_name, db_autoscaling_endpoint, db_project, db_branch)
        self._lakebase = LakebaseTarget(*lakebase_args) if any(lakebase_args) else None
        self._db_pool_max_size = db_pool_max_size
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._engine: _Engine | None = None
        self._target: DatabaseTarget | None = None
        self._unavailable_reason = "the database connection is still starting"
        self._serve_web_page = not enable_chat_proxy  # with the proxy, `/` is upstream's chat app
        super().__init__(agent_type, enable_chat_proxy=enable_chat_proxy)
        install_error_handlers(self.app)
        self.app.router.lifespan_context = self._lifespan

    # ----- extension point ---------------------------------------------------

    def transform_stream_event(self, event: dict, response_id: str) -> dict:
        """Rewrite one handler event before it is stored. Returns the event."""
        return event

    # ----- lifecycle -----------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, _app):
        connector = asyncio.create_task(self._connect_until_ready(), name="db-connect")
        warm_up = asyncio.create_task(asyncio.to_thread(warm_up_tracing), name="tracing-warm-up")
        # Wait for the first attempt, so a healthy server accepts background work at once.
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect_done()), timeout=30)
        except TimeoutError:
            logger.warning("Database not ready after 30s; background mode answers 503 until it is")
        # And for the tracing warm-up: otherwise the first traced run would build
        # MLflow's store on the event loop and stall heartbeats for seconds.
        await asyncio.wait([warm_up], timeout=30)
        try:
            yield
        finally:
            connector.cancel()
            await asyncio.gather(connector, warm_up, return_exceptions=True)
            if self._engine is not None:
                engine, self._engine = self._engine, None
                await engine.runner.close()
                await engine.db.close()

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
        store = Store(db)
        log = EventLog(store, self.settings.poll_interval_seconds)
        runner = Runner(store=store, log=log, settings=self.settings, worker_id=self.worker_id,
                        execute=self._execute_attempt)
        log.runs_here = runner.runs_here
        db.subscribe(db.queries.events_channel, log.on_notify)
        db.subscribe(db.queries.control_channel, runner.on_control)
        db.on_listener_reconnect(log.wake_all)
        db.on_listener_reconnect(runner.wake_queue)
        runner.start()
        return _Engine(db, store, log, runner)

    def _require_engine(self) -> _Engine:
        if self._engine is None:
            raise ApiError(503, f"Background mode is unavailable: {self._unavailable_reason}.",
                           code="background_unavailable")
        return self._engine

    # ----- routes --------------------------------------------------------------

    def _setup_routes(self) -> None:
        super()._setup_routes()
        # Our /health also reports the database; drop the parent's.
        self.app.router.routes = [r for r in self.app.router.routes if getattr(r, "path", None) != "/health"]

        @self.app.get("/health")
        async def health() -> JSONResponse:
            return JSONResponse(await self._health())

        @self.app.get("/responses")
        async def list_responses(request: Request):
            return await list_page(self._require_engine().store, owner_of(request.headers), request.query_params)

        if self._serve_web_page:
            install_web_page(self.app)

        @self.app.get("/responses/{response_id}")
        async def retrieve(response_id: str, request: Request):
            return await self._retrieve(response_id, request)

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
        engine.runner.stop_local(response_id, reason)
        engine.runner.forget_queued(response_id)
        return engine, owner, row

    def _engine_and_owner(self, response_id: str, request: Request) -> tuple[_Engine, str]:
        if not _RESPONSE_ID.match(response_id):
            raise ApiError(400, f"Invalid response id '{response_id[:80]}': expected 'resp_' followed by "
                           "32 lowercase hex digits.", code="invalid_response_id", param="response_id")
        return self._require_engine(), owner_of(request.headers)

    async def _health(self) -> dict[str, Any]:
        database: dict[str, Any] = {"backend": self._target.backend if self._target else None}
        engine = self._engine
        if engine is None:
            database |= {"status": "unavailable", "error": self._unavailable_reason}
        else:
            try:
                await asyncio.wait_for(engine.store.ping(), timeout=2.0)
                database["status"] = "connected"
            except Exception as exc:
                database |= {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"}
        return {
            "status": "healthy" if database["status"] == "connected" else "degraded",
            "database": database,
            "background_mode": database["status"] == "connected",
            "worker": {
                "id": self.worker_id,
                "running": engine.runner.running_count if engine else 0,
                "max_concurrent_tasks": self.settings.max_concurrent_tasks,
            },
        }

    # ----- POST /responses, /invocations -------------------------------------

    async def _handle_invocations_request(self, request: Request):
        headers = dict(request.headers)
        set_request_headers(headers)
        data = await self._read_json_body(request)
        background = _flag(data.pop("background", None), "background")
        stream = _flag(data.pop("stream", None), "stream")
        if isinstance(data.get("input"), str):
            # The OpenAI API accepts a bare string as one user message.
            data["input"] = [{"role": "user", "content": data["input"]}]
        try:
            request_data = self.validator.validate_and_convert_request(data)
        except ValueError as exc:
            raise ApiError(400, f"Invalid request body: {str(exc)[:2000]}", code="invalid_request") from None
        if background:
            return await self._start_background(request_data, stream, headers)
        return_trace_id = headers.get(_RETURN_TRACE_HEADER, "").lower() == "true"
        if stream:
            return await self._handle_stream_request(request_data, return_trace_id)
        return await self._handle_invoke_request(request_data, return_trace_id)

    async def _read_json_body(self, request: Request) -> dict[str, Any]:
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"Request body is {declared} bytes; the limit is {limit}.", code="body_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"Request body exceeds the limit of {limit} bytes.", code="body_too_large")
            chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks), parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"Request body is not valid JSON: {exc}.", code="invalid_json") from None
        except RecursionError:
            # json.loads recurses once per nesting level: "[[[[…]]]]" would otherwise be a 500.
            raise ApiError(400, "Request body is nested too deeply to parse.", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, f"Request body must be a JSON object, got {type(data).__name__}.", code="invalid_json")
        return data

    async def _start_background(self, request_data, stream: bool, headers: dict[str, str]):
        engine = self._require_engine()
        response_id = f"resp_{uuid.uuid4().hex}"
        request_dict = request_data.model_dump(mode="json", exclude_none=True)
        _check_storable(request_dict)
        try:
            response = await engine.runner.submit(
                response_id=response_id,
                owner=owner_of(headers),
                request=request_dict,
                headers=headers,
                stored_headers=storable_headers(headers),
                model=self.model_name,
            )
        except Exception as exc:
            logger.exception("Could not store background response")
            raise ApiError(503, f"Background mode is unavailable: the database rejected the request ({exc}).",
                           code="background_unavailable") from None
        if stream:
            return self._sse(engine, response_id, owner_of(headers), after=-1)
        return JSONResponse(response)

    # ----- GET /responses/{id} -----------------------------------------------

    async def _retrieve(self, response_id: str, request: Request):
        params = request.query_params
        stream = _flag(params.get("stream"), "stream")
        starting_after = _cursor(params.get("starting_after"))
        if starting_after is not None and not stream:
            raise ApiError(400, "starting_after is only supported together with stream=true.",
                           code="invalid_parameter", param="starting_after")
        engine, owner = self._engine_and_owner(response_id, request)
        row = await engine.store.get_response(response_id, owner)
        if row is None:
            raise not_found(response_id)
        if stream:
            after = -1 if starting_after is None else starting_after
            if after > row.last_sequence and row.status.is_terminal:
                raise ApiError(400, f"starting_after={after} is past the last event ({row.last_sequence}) "
                               "of this finished response.", code="invalid_parameter", param="starting_after")
            if after == row.last_sequence and row.status.is_terminal:
                # The client already has the terminal event (it lost only [DONE]): there is nothing
                # after it, so end now; tailing would wait forever for an event that never comes.
                return StreamingResponse(iter(["data: [DONE]\n\n"]), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            return self._sse(engine, response_id, owner, after)
        output = None
        if not row.status.is_terminal and row.attempt_number > 0:
            output = await engine.store.attempt_output_items(response_id, row.attempt_number)
        return response_from_row(row, output)

    def _sse(self, engine: _Engine, response_id: str, owner: str, after: int) -> StreamingResponse:
        async def exists() -> bool:
            return await engine.store.get_response(response_id, owner) is not None

        async def frames() -> AsyncIterator[str]:
            ended = False
            # One chunk per batch of available events: one socket write, not one per event.
            async with aclosing(engine.log.tail_batches(response_id, after, exists)) as batches:
                async for batch in batches:
                    if batch is None:
                        yield ": keep-alive\n\n"
                        continue
                    ended = batch[-1].is_terminal
                    yield "".join([f"data: {event.data}\n\n" for event in batch])
            if not ended:
                gone = {"type": "error", "code": "response_not_found",
                        "message": f"Response {response_id} was deleted.", "response_id": response_id}
                yield f"data: {json.dumps(gone)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ----- running the handler -------------------------------------------------

    async def _execute_attempt(self, lease: RunLease, writer: AttemptWriter) -> None:
        """Run the registered handler for one attempt, one trace per attempt."""
        stream_fn, invoke_fn = get_stream_function(), get_invoke_function()
        handler = stream_fn or invoke_fn
        if handler is None:
            raise RuntimeError("no @stream() or @invoke() handler is registered")
        request = self.validator.validate_and_convert_request(lease.request)
        rid = lease.response_id
        with mlflow.start_span(name=handler.__name__) as span:
            # Without a tracking destination MLflow hands out no-op spans.
            lease.trace_id = span.trace_id if span.trace_id != _NO_OP_TRACE_ID else None
            span.set_inputs(lease.request)
            if stream_fn is not None:
                async for event in _iterate(stream_fn(request)):
                    if not _plain_text_delta(event):
                        event = self.validator.validate_and_convert_result(event, stream=True)
                    writer.append(self.transform_stream_event(event, rid))
                    await writer.wait_for_room()
            else:
                result = invoke_fn(request)
                if inspect.isawaitable(result):
                    result = await result
                result = self.validator.validate_and_convert_result(result)
                for index, item in enumerate(result.get("output") or []):
                    event = {"type": "response.output_item.done", "output_index": index, "item": item}
                    writer.append(self.transform_stream_event(event, rid))
            span.set_attribute(SpanAttributeKey.MESSAGE_FORMAT, "openai")
            span.set_outputs({"output": writer.output_items})

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
            os.environ["EMBEDDED_POSTGRES_DIR"] = str(embedded.data_dir)
        options: dict[str, Any] = {}
        if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
            # A spawned worker answers uvicorn's health pings only after importing the
            # app (MLflow, agent SDKs: several seconds on a busy machine); uvicorn's
            # 5s default would kill and respawn it forever.
            options["timeout_worker_healthcheck"] = 120
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


_INT_OR_NONE = (int, type(None))


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # the exit status the default action would give


def _plain_text_delta(event: Any) -> bool:
    """A text delta that MLflow's stream-event validation would accept and return unchanged.

    Text deltas come by the thousand and pydantic validation costs more than
    storing them; this exact-type check accepts a subset of what the validator
    accepts, and everything else still goes through the validator.
    """
    return (
        type(event) is dict
        and event.get("type") == "response.output_text.delta"
        and type(event.get("delta")) is str
        and type(event.get("item_id")) is str
        and type(event.get("content_index")) in _INT_OR_NONE
        and type(event.get("output_index")) in _INT_OR_NONE
        and event.get("custom_outputs") is None
    )


async def _iterate(stream) -> AsyncIterator[Any]:
    """Iterate an async or a plain generator; a plain one runs in a thread."""
    if hasattr(stream, "__aiter__"):
        async for item in stream:
            yield item
        return
    done = object()
    iterator = iter(stream)
    while (item := await asyncio.to_thread(next, iterator, done)) is not done:
        yield item


def _reject_constant(name: str) -> float:
    """NaN and Infinity are not JSON (RFC 8259), and Postgres jsonb cannot store them."""
    raise ValueError(f"{name} is not a valid JSON value")


def _check_storable(value: Any) -> None:
    """Reject strings Postgres cannot store in jsonb (NUL characters, unpaired surrogates) with a 400,
    instead of a database error after the request was accepted."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise ApiError(400, "Request body contains a NUL character (\\u0000), which cannot be stored.",
                               code="invalid_request")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(400, "Request body contains an unpaired UTF-16 surrogate (e.g. \\ud800), "
                               "which is not valid Unicode.", code="invalid_request") from None


def _flag(value: Any, name: str) -> bool:
    """A boolean body field or query parameter; None means false."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ApiError(400, f"'{name}' must be a boolean (true or false), got {str(value)[:40]!r}.",
                   code="invalid_parameter", param=name)


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > _MAX_SEQUENCE:
        raise ApiError(400, f"starting_after must be a whole number from 0 to {_MAX_SEQUENCE}, "
                       f"got {value[:40]!r}.", code="invalid_parameter", param="starting_after")
    return int(value)

