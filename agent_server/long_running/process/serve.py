"""``run()``: MLflow's flags, the embedded PostgreSQL that ``--workers`` share, and uvicorn."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import signal
import threading
from typing import Any

import uvicorn

from ..settings import EngineSettings
from ..storage.database import DatabaseUnavailable, LakebaseTarget, resolve_target
from ..storage.embedded import EMBEDDED_URL_ENV, EmbeddedPostgres
from .shutdown import on_forced_exit


def serve(app_import_string: str, settings: EngineSettings, *, host: str, argv: list[str] | None,
          database_url: str | None, lakebase: LakebaseTarget | None) -> None:
    """Serve with ``--port``, ``--workers`` and ``--reload`` (unknown flags are ignored, so an entry
    point can add its own). With no database configured, an embedded PostgreSQL is started here,
    before uvicorn forks its workers, shared by all of them and stopped on exit."""
    parser = argparse.ArgumentParser(description="Start the agent server")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reload", action="store_true")
    args, _unknown = parser.parse_known_args(argv)
    embedded = None
    try:
        target = resolve_target(database_url=database_url, lakebase=lakebase)
    except DatabaseUnavailable:
        target = None  # each worker reports why, in /health and on 503s
    if target is not None and target.backend == "embedded":
        embedded = EmbeddedPostgres(target.embedded_dir)
        os.environ[EMBEDDED_URL_ENV] = embedded.start()
        if args.workers == 1 and not args.reload:
            on_forced_exit(embedded.stop)  # the app runs in this process
        os.environ["EMBEDDED_POSTGRES_DIR"] = str(embedded.data_dir)
    # LOG_LEVEL (the root logger's level) governs uvicorn's own lines too, its access log
    # included: at WARNING a request is not a log line.
    options: dict[str, Any] = {"log_level": logging.getLogger().getEffectiveLevel()}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # A spawned worker answers uvicorn's health pings only after importing the
        # app (MLflow, agent SDKs: several seconds on a busy machine); uvicorn's
        # 5s default would kill and respawn it forever.
        options["timeout_worker_healthcheck"] = 120
    # Open requests get half the shutdown bound (live streams end at once on
    # SIGTERM, see shutdown.py); handing runs over and closing the pool, the rest.
    options["timeout_graceful_shutdown"] = max(settings.shutdown_timeout_seconds / 2, 0.5)
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


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # the exit status the default action would give
