"""A scriptable agent for engine tests: what it does comes from custom_inputs.

``custom_inputs``:
- ``deltas`` (int, default 3) and ``pause`` (seconds between them, default 0);
- ``fail_after`` (int): raise after that many deltas;
- ``record`` (path): append one JSON line per invocation and per delta, so a
  test can see which process ran which attempt and when it stopped emitting;
- ``tag``: copied into each record line;
- ``echo_headers`` (bool): put the request headers it sees into its text.

Importing this module registers the handlers (once per process).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

from mlflow.genai.agent_server import get_request_headers, invoke, stream

TEXT_PREFIX = "delta-"


def _record(path: str | None, **entry) -> None:
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "t": time.time(), **entry}) + "\n")


def _message_item(item_id: str, text: str) -> dict:
    return {"type": "message", "id": item_id, "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


@stream()
async def synthetic_stream(request):
    ci = dict(request.custom_inputs or {})
    deltas, pause = int(ci.get("deltas", 3)), float(ci.get("pause", 0))
    record = ci.get("record")
    conversation_id = request.context.conversation_id if request.context else None
    last_input = request.input[-1].model_dump() if request.input else {}
    _record(record, kind="invoke", tag=ci.get("tag"), conversation_id=conversation_id,
            recovery=str(last_input.get("content", "")).startswith("[RECOVERY]"))
    item_id = f"msg_{uuid.uuid4().hex[:8]}"
    parts = []
    if ci.get("echo_headers"):
        headers = get_request_headers()
        parts.append(json.dumps({k: v for k, v in headers.items() if k.startswith("x-")}, sort_keys=True))
    for i in range(deltas):
        if pause:
            await asyncio.sleep(pause)
        if "fail_after" in ci and i >= int(ci["fail_after"]):
            raise RuntimeError("synthetic failure")
        text = f"{TEXT_PREFIX}{i} "
        parts.append(text)
        _record(record, kind="delta", tag=ci.get("tag"), i=i)
        yield {"type": "response.output_text.delta", "item_id": item_id, "delta": text,
               "emitted_at": time.time()}
    yield {"type": "response.output_item.done", "item": _message_item(item_id, "".join(parts))}


@invoke()
async def synthetic_invoke(request):
    """The same text as the stream handler, as one output item."""
    items = [e["item"] async for e in synthetic_stream(request) if e["type"] == "response.output_item.done"]
    return {"output": items}
