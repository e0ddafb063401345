"""A server process running the chaos agent (``scripts/chaos_agent.py``), for
``scripts/chaos.py``. Constructor keyword arguments come as JSON in
``CHAOS_SERVER_KWARGS``; flags (``--port``, ``--workers``) as for ``start-server``.
It only ever listens on 127.0.0.1."""

import json
import os

import scripts.chaos_agent  # noqa: F401  (registers the handlers)
from agent_server.long_running import LongRunningAgentServer

server = LongRunningAgentServer("ResponsesAgent", **json.loads(os.environ.get("CHAOS_SERVER_KWARGS", "{}")))
app = server.app

if __name__ == "__main__":
    server.run("scripts.chaos_serve:app", host="127.0.0.1")
