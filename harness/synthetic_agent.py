"""The one scriptable agent of the engine tests, the fault scenarios
(``harness/chaos.py``) and the benchmark (``bench/benchmark.py``): what it does
comes from ``custom_inputs``. ``harness/synthetic_server.py`` serves it.

``custom_inputs``:
- ``deltas`` (int, default 3) and ``pause`` (seconds before each, default 0:
  no sleep at all); delta ``i`` has the text ``"delta-<i> "`` and carries its
  emit wall-clock time in ``emitted_at``;
- ``start_delay`` (seconds): wait before the first delta (so a tailing client
  can attach before the stream starts); ``start_at`` (epoch seconds): wait
  until then, so many runs posted one after another all emit at the same time;
- ``fail_after`` (int): raise after that many deltas;
- ``record`` (path): append one JSON line per invocation and per delta, so a
  test can see which process ran which attempt and when it stopped emitting;
  also one ``exit`` line when the handler ends (``how``: completed, cancelled
  or error) and ``tool`` lines around a tool call;
- ``tag``: copied into each record line;
- ``echo_headers`` (bool): put the request headers it sees into its text;
- ``tool_at`` (int) and ``tool_seconds`` (float): before delta ``tool_at``,
  emit a ``function_call`` item, spend ``tool_seconds`` "in the tool", then
  emit its ``function_call_output`` item (a slow tool call);
- ``hold_at`` and ``hold`` (seconds): on the first attempt only, stop for
  ``hold`` seconds at a named point, so a fault lands exactly there:
  ``"start"`` (before the first event), ``"delta:K"`` (after K deltas),
  ``"tool"`` (inside the tool call) or ``"end"`` (after the handler's last
  event, before the server writes the terminal status). Resumed attempts
  (their last input is a ``[RECOVERY]`` message) never hold.

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


async def _hold(record: str | None, tag, at: str, seconds: float) -> None:
    """Stop at a named point (recorded first, so a test knows the fault lands here)."""
    _record(record, kind="hold", tag=tag, at=at)
    await asyncio.sleep(seconds)


def _attempt_of(conversation_id: str | None) -> int:
    """Attempt N from a rotated ``{base}::attempt-N`` conversation id (1 otherwise)."""
    if conversation_id and "::attempt-" in conversation_id:
        try:
            return int(conversation_id.rsplit("::attempt-", 1)[1])
        except ValueError:
            pass
    return 1


def _text_of(item: dict) -> str:
    """An input item's text (the recorded ``input`` shows what history the handler was given)."""
    content = item.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content if content is not None else item.get("output", ""))


@stream()
async def synthetic_stream(request):
    ci = dict(request.custom_inputs or {})
    deltas, pause = int(ci.get("deltas", 3)), float(ci.get("pause", 0))
    record, tag = ci.get("record"), ci.get("tag")
    conversation_id = request.context.conversation_id if request.context else None
    last_input = request.input[-1].model_dump() if request.input else {}
    recovery = str(last_input.get("content", "")).startswith("[RECOVERY]")
    attempt = _attempt_of(conversation_id)
    if record:  # the texts only when recorded: a long conversation's input is thousands of items
        _record(record, kind="invoke", tag=tag, conversation_id=conversation_id, recovery=recovery,
                attempt=attempt, input=[_text_of(item.model_dump()) for item in request.input])
    hold_at = None if recovery else ci.get("hold_at")
    hold = float(ci.get("hold", 0))
    tool_at = ci.get("tool_at")
    item_id = f"msg_{uuid.uuid4().hex[:8]}"
    parts = []
    how = "error"
    try:
        if ci.get("echo_headers"):
            headers = get_request_headers()
            parts.append(json.dumps({k: v for k, v in headers.items() if k.startswith("x-")}, sort_keys=True))
        if ci.get("start_delay"):
            await asyncio.sleep(float(ci["start_delay"]))
        start_at = float(ci.get("start_at", 0))
        if start_at > time.time():
            await asyncio.sleep(start_at - time.time())
        if hold_at == "start":
            await _hold(record, tag, hold_at, hold)
        for i in range(deltas):
            if tool_at is not None and i == int(tool_at):
                call_id = f"call_{uuid.uuid4().hex[:8]}"
                yield {"type": "response.output_item.done",
                       "item": {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id,
                                "name": "slow_tool", "arguments": "{}"}}
                _record(record, kind="tool", tag=tag, attempt=attempt, phase="start")
                if hold_at == "tool":
                    await _hold(record, tag, hold_at, hold)
                await asyncio.sleep(float(ci.get("tool_seconds", 0)))
                _record(record, kind="tool", tag=tag, attempt=attempt, phase="end")
                yield {"type": "response.output_item.done",
                       "item": {"type": "function_call_output", "call_id": call_id, "output": "tool result"}}
            if hold_at == f"delta:{i}":
                await _hold(record, tag, hold_at, hold)
            if pause:
                await asyncio.sleep(pause)
            if "fail_after" in ci and i >= int(ci["fail_after"]):
                raise RuntimeError("synthetic failure")
            text = f"{TEXT_PREFIX}{i} "
            parts.append(text)
            _record(record, kind="delta", tag=tag, i=i, attempt=attempt)
            yield {"type": "response.output_text.delta", "item_id": item_id, "delta": text,
                   "emitted_at": time.time()}
        yield {"type": "response.output_item.done", "item": _message_item(item_id, "".join(parts))}
        if hold_at == "end":
            await _hold(record, tag, hold_at, hold)
        how = "completed"
    except (asyncio.CancelledError, GeneratorExit):
        how = "cancelled"
        raise
    finally:
        _record(record, kind="exit", tag=tag, attempt=attempt, how=how)


@invoke()
async def synthetic_invoke(request):
    """The same text as the stream handler, as one output item."""
    items = [e["item"] async for e in synthetic_stream(request)
             if e["type"] == "response.output_item.done" and e["item"]["type"] == "message"]
    return {"output": items}
