"""``/health`` (the database, the agent's import, memory, this worker, the webhook backlog) and
``/agent/info`` (as MLflow's)."""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from ..process.engine import EngineConnection
from .context import RouteContext


async def health(ctx: RouteContext) -> dict[str, Any]:
    engines = ctx.engines
    database: dict[str, Any] = {"backend": engines.target.backend if engines.target else None}
    engine = engines.engine
    if engine is None:
        database |= {"status": "unavailable", "error": engines.unavailable_reason}
    else:
        try:
            await engine.store.ping()  # bounded: a frozen database is "degraded" within the bound
            database["status"] = "connected"
        except Exception as exc:
            database |= {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"}
    webhooks = await _webhooks(engines, database["status"] == "connected")
    return {
        "status": "healthy" if database["status"] == "connected" else "degraded",
        "database": database,
        "background_mode": database["status"] == "connected",
        # Runs that start while MLflow tracing warms up (seconds after start-up) are not traced.
        "tracing": "ready" if ctx.tracing.done else "warming_up",
        "agent": "ready" if ctx.runtime.agent_ready else "importing",
        # Which search long-term memory uses (decided when the database connects), and who gets memory.
        "memory": {**(engine.memory.describe() if engine else {"status": "unavailable"}), **ctx.memory.describe()},
        "worker": {
            "id": engines.worker_id,
            "running": engine.worker.running_count if engine else 0,
            "liveness_lock": engine.liveness.state() if engine else "not_held",
            "max_concurrent_tasks": ctx.settings.max_concurrent_tasks,
        },
        "webhooks": webhooks,
    }


async def _webhooks(engines: EngineConnection, connected: bool) -> dict[str, Any]:
    """Whether webhooks are on and, once the database answers, the backlog of every worker."""
    settings = engines.webhook_settings
    if not settings.enabled:
        return {"enabled": False}
    answer: dict[str, Any] = {"enabled": True, "urls": len(settings.urls)}
    engine = engines.engine
    if engine is None or not connected:
        return answer
    try:
        backlog = await engine.store.webhook_backlog(settings.urls)
    except Exception as exc:
        return answer | {"error": f"{type(exc).__name__}: {exc}"}
    return answer | {"stopped_urls": backlog.stopped_urls, "pending": backlog.pending, "failing": backlog.failing,
                     "oldest_pending_seconds": None if backlog.oldest_seconds is None
                     else round(backlog.oldest_seconds, 1)}


def agent_info() -> dict[str, Any]:
    """What MLflow's ``AgentServer`` answers at ``/agent/info``."""
    return {"name": os.environ.get("DATABRICKS_APP_NAME", "mlflow_agent_server"), "use_case": "agent",
            "mlflow_version": _mlflow_version(), "agent_api": "responses"}


def _mlflow_version() -> str:
    """MLflow's version without importing it."""
    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"
