"""A server process running the synthetic agent (``harness/synthetic_agent.py``),
for the tests, the fault scenarios and the benchmark. It only ever listens on
127.0.0.1.

Constructor keyword arguments come as JSON in ``SYNTHETIC_SERVER_KWARGS``;
flags (``--port``, ``--workers``) as for ``start-server``. ``LOG_LEVEL``
(default ``INFO``) sets the log level; ``SYNTHETIC_TRACING=0`` turns MLflow
tracing off (the benchmark measures the engine, not MLflow's trace export)::

    SYNTHETIC_SERVER_KWARGS='{"database_url": "..."}' python -m harness.synthetic_server --port 8123
"""

import json
import logging
import os

import mlflow

import harness.synthetic_agent  # noqa: F401  (registers the handlers)
from agent_server.long_running import LongRunningAgentServer

logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                    format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
if os.environ.get("SYNTHETIC_TRACING", "1") == "0":
    mlflow.tracing.disable()

server = LongRunningAgentServer("ResponsesAgent", **json.loads(os.environ.get("SYNTHETIC_SERVER_KWARGS", "{}")))
app = server.app

if __name__ == "__main__":
    server.run("harness.synthetic_server:app", host="127.0.0.1")
