"""The accept benchmark's floor: the least any server on this machine pays for a durable accept.

A bare ASGI app on the same uvicorn (uvloop, httptools) as the real server,
with no framework, no validation and no run: ``POST /responses`` parses the
JSON body and stores the response with the engine's own INSERT (row and
event 0, one durable commit) through the engine's pool, then answers with
the id. ``bench/benchmark.py`` times it exactly as it times the real server,
so the difference between the two is what the engine and its framework add.

Constructor settings come as JSON in ``SYNTHETIC_SERVER_KWARGS``, as for the
synthetic server (``database_url``, ``db_schema``), the port as ``--port``::

    SYNTHETIC_SERVER_KWARGS='{"database_url": "...", "db_schema": "floor"}' python -m bench.floor --port 8124
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

import uvicorn

from agent_server.long_running.storage.database import Database, DatabaseTarget
from agent_server.long_running.storage.models import Status
from agent_server.long_running.storage.queries import Queries
from agent_server.long_running.storage.store import Store

_JSON = [(b"content-type", b"application/json")]


class FloorApp:
    def __init__(self, database_url: str, db_schema: str):
        self.db = Database(target=DatabaseTarget("url", url=database_url), queries=Queries(db_schema),
                           statement_timeout_ms=5000)
        self.store = Store(self.db)
        self.worker_id = f"floor:{os.getpid()}"

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["method"] == "POST" and scope["path"] == "/responses":
                await self._accept(receive, send)
            elif scope["path"] == "/health":
                await _answer(send, 200, {"status": "healthy", "database": {"status": "connected"},
                                          "worker": {"id": self.worker_id, "running": 0}})
            else:
                await _answer(send, 404, {"error": "not found"})

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.db.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.db.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _accept(self, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = json.loads(body)
        response_id = f"resp_{uuid.uuid4().hex}"
        created_at = time.time()
        response = {"id": response_id, "object": "response", "created_at": created_at, "status": "in_progress"}
        await self.store.insert_response(
            response_id=response_id, owner="", status=Status.IN_PROGRESS, worker_id=self.worker_id,
            created_at=created_at, request=request, request_headers={}, model="floor",
            created_event=json.dumps({"type": "response.created", "sequence_number": 0, "response": response}),
        )
        await _answer(send, 200, response)


async def _answer(send, status: int, body: dict) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="accepted for the benchmark's launcher; must be 1")
    args = parser.parse_args()
    if args.workers != 1:
        parser.error("the floor server runs one worker")
    kwargs = json.loads(os.environ["SYNTHETIC_SERVER_KWARGS"])
    app = FloorApp(kwargs["database_url"], kwargs["db_schema"])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
