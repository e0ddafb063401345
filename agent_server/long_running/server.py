"""``LongRunningAgentServer``: the constructor, the app's assembly, and the extension points.

A background request reads straight down the layers (docs/architecture.md):
``http/admission.py`` validates and stores it through the worker, the attempt
runs the agent's handler, its events are stored through the group commit,
and a tailing client follows them through the event tail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from .errors import install_error_handlers
from .http.context import RouteContext
from .http.database_errors import install_database_error_handler
from .http.header_checks import HeaderChecks
from .http.routes import install_routes
from .memory.access import MemoryGate
from .process.agent_runtime import AgentHandler, AgentRuntime
from .process.engine import EngineConnection
from .process.serve import serve
from .process.shutdown import ShutdownSignal
from .process.tracing import TracingWarmUp
from .settings import EngineSettings
from .storage.database import LakebaseTarget
from .webhooks.settings import WebhookSettings


class LongRunningAgentServer:
    """An agent server with durable background runs on Postgres.

    Constructor- and route-compatible with ``databricks_ai_bridge.long_running.LongRunningAgentServer``
    (an MLflow ``AgentServer`` subclass) and serving the same ``app``; see docs/server-settings.md
    for every argument. Not a subclass itself: MLflow and the agent are imported after start-up, so
    ``/health`` answers in about a second. The database is chosen at start-up: ``database_url`` /
    ``DATABASE_URL``, else Lakebase (arguments or ``LAKEBASE_*``), else an embedded PostgreSQL.

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
        database_url: str | None = None,
        model_name: str | None = None,
        **settings: Any,
    ):
        """``settings`` are :class:`EngineSettings` fields (``task_timeout_seconds``,
        ``max_concurrent_tasks``, ``db_schema``, ...), each validated there."""
        if agent_type != "ResponsesAgent":
            raise ValueError(f"LongRunningAgentServer only supports agent_type 'ResponsesAgent', got {agent_type!r}")
        unknown = sorted(set(settings) - EngineSettings.names())
        if unknown:
            raise TypeError(f"LongRunningAgentServer got unexpected keyword arguments: {', '.join(unknown)}")
        self.settings = EngineSettings(**settings)
        self.agent_type = agent_type
        self.model_name = model_name or os.environ.get("DATABRICKS_APP_NAME") or "agent"
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._database_url = database_url
        lakebase_args = (db_instance_name, db_autoscaling_endpoint, db_project, db_branch)
        self._lakebase = LakebaseTarget(*lakebase_args) if any(lakebase_args) else None
        self._runtime = AgentRuntime()
        self._tracing = TracingWarmUp()
        # Webhooks are configured by the environment only (raises ValueError naming a malformed variable).
        webhooks = WebhookSettings.from_environment(os.environ)
        # Deployed, every caller has a forwarded identity: one without gets no memory (fail closed).
        memory = MemoryGate(lambda: self._engines.memory_book(),
                            anonymous_allowed=not os.environ.get("DATABRICKS_APP_NAME"))
        handler = AgentHandler(self._runtime, self.transform_stream_event, self._tracing.ready, memory)
        self._engines = EngineConnection(self.settings, worker_id=self.worker_id, handler=handler,
                                         request_model_loaded=self._runtime.mlflow,
                                         database_url=database_url, lakebase=self._lakebase, webhooks=webhooks)
        self._shutdown = ShutdownSignal(self.settings.shutdown_timeout_seconds)
        self.app = _chat_proxy_app(agent_type) if enable_chat_proxy else FastAPI(title="Agent Server")
        context = RouteContext(self.settings, self._engines, self._runtime, self._tracing, handler, self.model_name,
                               memory)
        # With the chat proxy, `/` is upstream's chat app.
        install_routes(self.app, context, serve_web_page=not enable_chat_proxy)
        install_error_handlers(self.app)
        install_database_error_handler(self.app)
        self.app.add_middleware(HeaderChecks)
        self.app.router.lifespan_context = self._lifespan

    # ----- extension points --------------------------------------------------

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
        return self._runtime.validator()

    def run(self, app_import_string: str, host: str = "0.0.0.0", argv: list[str] | None = None) -> None:
        """Serve with MLflow's flags (``--port``, ``--workers``, ``--reload``)."""
        serve(app_import_string, self.settings, host=host, argv=argv, database_url=self._database_url,
              lakebase=self._lakebase)

    # ----- lifecycle -----------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, _app):
        engines = self._engines
        engines.reset()
        # First thing: a SIGTERM during start-up is bounded by the watchdog too.
        self._shutdown.install(engines.begin_shutdown)
        connector = asyncio.create_task(engines.connect_until_ready(), name="db-connect")
        self._runtime.start()
        self._tracing.start(self._runtime.mlflow, self._runtime.agent)
        # Wait for the first attempt, so a healthy server accepts background work at once.
        await engines.wait_first_attempt(timeout=30)
        try:
            yield
        finally:
            watchdog = self._shutdown.bound_the_rest()
            connector.cancel()
            await asyncio.gather(connector, return_exceptions=True)
            engines.begin_shutdown()
            engine, handover = engines.take_for_close()
            if engine is not None:
                async def close_connections() -> None:
                    await engine.liveness.close()
                    await engine.db.close()

                await self._shutdown.within_bound(handover, close_connections)
            # Last: the warm-up thread cannot be interrupted (after SIGTERM the watchdog bounds it).
            await self._tracing.stop()
            self._runtime.stop()
            if watchdog is not None:
                watchdog.cancel()  # done in time; what follows is uvicorn's own exit
            self._shutdown.uninstall()


def _chat_proxy_app(agent_type: str) -> FastAPI:
    """MLflow's app with its chat-proxy middleware, which forwards what no route matches to the
    chat UI; our routes replace its own. This imports MLflow at construction: with the proxy, the
    server starts as slowly as MLflow's."""
    from mlflow.genai.agent_server import AgentServer

    app = AgentServer(agent_type, enable_chat_proxy=True).app
    theirs = {"/invocations", "/responses", "/agent/info", "/health"}
    app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) not in theirs]
    return app
