"""The benchmark's server process: ``LongRunningAgentServer`` with a synthetic handler.

The handler emits ``custom_inputs.deltas`` ``response.output_text.delta``
events, ``custom_inputs.pause`` seconds apart (no pause: no sleep at all), each
carrying its emit wall-clock time (``emitted_at``, and in its text), then one
``response.output_item.done``. ``custom_inputs.start_delay`` waits before the
first delta (so a tailing client can attach before the stream starts);
``custom_inputs.start_at`` (epoch seconds) waits until then, so many tasks
posted one after another all emit at the same time.
``BENCH_TRACING=0`` disables MLflow tracing in the server process.

Constructor keyword arguments come as JSON in ``BENCH_SERVER_KWARGS``; flags
(``--port``, ``--workers``) as for ``start-server``::

    BENCH_SERVER_KWARGS='{"database_url": "..."}' python -m scripts.bench_agent --port 8123
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import mlflow
from mlflow.genai.agent_server import stream

from agent_server.long_running import LongRunningAgentServer


async def bench_stream(request):
    ci = dict(request.custom_inputs or {})
    deltas = int(ci.get("deltas", 10))
    pause = float(ci.get("pause", 0))
    start_delay = float(ci.get("start_delay", 0))
    start_at = float(ci.get("start_at", 0))
    item_id = f"msg_{uuid.uuid4().hex[:8]}"
    if start_delay:
        await asyncio.sleep(start_delay)
    if start_at > time.time():
        await asyncio.sleep(start_at - time.time())
    for i in range(deltas):
        if pause and i:
            await asyncio.sleep(pause)
        now = time.time()
        yield {"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
               "content_index": 0, "delta": f"{i}@{now:.6f} ", "emitted_at": now}
    text = f"{deltas} deltas"
    yield {"type": "response.output_item.done", "output_index": 0,
           "item": {"type": "message", "id": item_id, "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}}


if os.environ.get("BENCH_TRACING", "1") == "0":
    # Measure the engine, not MLflow's trace export (see docs/benchmarks.md).
    mlflow.tracing.disable()

if __name__ == "scripts.bench_agent":
    # Run as a script (or as a spawned worker's ``__mp_main__``), this file is
    # imported again by uvicorn as ``scripts.bench_agent``: register the
    # handler there only, once per process.
    stream()(bench_stream)

server = LongRunningAgentServer("ResponsesAgent", **json.loads(os.environ.get("BENCH_SERVER_KWARGS", "{}")))
app = server.app

if __name__ == "__main__":
    server.run("scripts.bench_agent:app", host="127.0.0.1")
