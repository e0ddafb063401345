"""The reference server (``databricks_ai_bridge.long_running.LongRunningAgentServer``)
with the synthetic agent, on a local Postgres, for side-by-side figures
(``bench/recovery.py``). It only ever listens on 127.0.0.1.

The reference reaches its database only through Lakebase
(``AsyncLakebaseSQLAlchemy``, which asks a Databricks workspace for the host
and a token). Here that class is replaced, in this process only, by one that
builds the same SQLAlchemy async engine on ``REFERENCE_DATABASE_URL``; the
rest of the reference runs unchanged. Its tables live in its fixed schema
``agent_server``::

    REFERENCE_DATABASE_URL=postgresql://... python -m bench.reference_server --port 8123

``REFERENCE_AGENT_MODULE`` names the module that registers the handlers
(default ``harness.synthetic_agent``; ``agent_server.agents.openai_agent`` runs
the template's own OpenAI Agents agent, which brings this project's engine
modules along as its import's cost).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os

import mlflow
from sqlalchemy.ext.asyncio import create_async_engine

from databricks_ai_bridge.long_running import LongRunningAgentServer
from databricks_ai_bridge.long_running import db as reference_db

logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                    format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
if os.environ.get("SYNTHETIC_TRACING", "1") == "0":
    mlflow.tracing.disable()


class LocalEngine:
    """Stands in for ``AsyncLakebaseSQLAlchemy``: the same pool arguments, a local URL."""

    def __init__(self, *, pool_size: int = 10, max_overflow: int = 0, pool_pre_ping: bool = True, **_lakebase):
        url = os.environ["REFERENCE_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
        self.engine = create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow,
                                          pool_pre_ping=pool_pre_ping)


importlib.import_module(os.environ.get("REFERENCE_AGENT_MODULE", "harness.synthetic_agent"))  # registers the handlers
reference_db.AsyncLakebaseSQLAlchemy = LocalEngine
# The reference turns background mode on only when a Lakebase instance is named.
os.environ["LAKEBASE_INSTANCE_NAME"] = os.environ.get("LAKEBASE_INSTANCE_NAME") or "local"

server = LongRunningAgentServer("ResponsesAgent", db_instance_name="local")
app = server.app

if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args, _ = parser.parse_known_args()
    target = app if args.workers == 1 else "bench.reference_server:app"
    # The same log level for uvicorn's lines (its access log) as our server gives them.
    uvicorn.run(target, host="127.0.0.1", port=args.port, workers=args.workers,
                log_level=logging.getLogger().getEffectiveLevel())
