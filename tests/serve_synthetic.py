"""A server process running the synthetic agent, for tests and benchmarks.

Constructor keyword arguments come as JSON in ``SYNTHETIC_SERVER_KWARGS``;
flags (``--port``, ``--workers``) as for ``start-server``.
"""

import json
import logging
import os

import tests.synthetic_agent  # noqa: F401  (registers the handlers)
from agent_server.long_running import LongRunningAgentServer

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
server = LongRunningAgentServer("ResponsesAgent", **json.loads(os.environ.get("SYNTHETIC_SERVER_KWARGS", "{}")))
app = server.app

if __name__ == "__main__":
    server.run("tests.serve_synthetic:app", host="127.0.0.1")
