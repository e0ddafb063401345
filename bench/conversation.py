"""The ``conversation`` figure of ``uv run bench``: does a long conversation stay cheap?

Turn 1 (a new conversation each time) against turn 1,000 (a conversation that
already holds 999 turns, 1,998 items, written straight into the tables so the
set-up takes a second instead of 999 runs). For each, sequential turns of the
synthetic agent (one delta) on one keep-alive connection:

- accept: ``POST /responses {background: true, conversation}`` until the id;
- first event: ``POST /responses {background: true, stream: true, conversation}``
  until the handler's first delta (after the history was read and handed to it);
  the time to ``response.created`` is reported beside it, and so is the first
  turn a worker runs of the long conversation (``cold_first_delta_ms``: it reads
  and parses all 1,998 items; later turns only the items added since).

The target is turn 1,000 within 2x of turn 1 (p50).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from bench.measure import sse_frames, summary_ms

PRIOR_TURNS = 999
TARGET_RATIO = 2.0


def _seed(ctx, schema: str, turns: int) -> str:
    """A conversation of ``turns`` finished turns (a user message and an answer each), owned by the anonymous caller."""
    conversation_id = f"conv_{uuid.uuid4().hex}"
    items = []
    for i in range(turns):
        items.append({"type": "message", "role": "user", "content": f"bench turn {i}: tell me more"})
        items.append({"type": "message", "id": f"msg_{uuid.uuid4().hex[:8]}", "role": "assistant",
                      "status": "completed",
                      "content": [{"type": "output_text", "text": f"answer {i} " * 20, "annotations": []}]})
    with ctx.pg.conn.transaction():
        ctx.pg.conn.execute(f"INSERT INTO {schema}.conversations (conversation_id, owner, item_count) "
                            "VALUES (%s, '', %s)", (conversation_id, len(items)))
        ctx.pg.conn.execute(
            f"INSERT INTO {schema}.conversation_items (conversation_id, position, item) "
            "SELECT %s, x.ord - 1, x.item FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(item, ord)",
            (conversation_id, json.dumps(items)))
    return conversation_id


def _body(conversation_id: str, **flags) -> dict[str, Any]:
    return {"input": "bench", "conversation": conversation_id, "background": True,
            "custom_inputs": {"deltas": 1}, **flags}


def _turns(client: httpx.Client, conversation_of, n: int, warm_up: int) -> dict[str, Any]:
    """``n`` measured streamed turns and accepts (after ``warm_up``), each run to its end; the first
    streamed turn's time to its first delta is reported apart (``cold``: a worker's first turn of a
    conversation reads and parses all of it)."""
    accepts, created, first_delta = [], [], []
    for i in range(warm_up + n):
        t0 = time.perf_counter()
        with client.stream("POST", "/responses", json=_body(conversation_of(), stream=True)) as r:
            lines = r.iter_lines()
            seen_created = seen_delta = None
            for line in lines:
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                kind = json.loads(line[6:])["type"]
                if kind == "response.created" and seen_created is None:
                    seen_created = time.perf_counter() - t0
                if kind == "response.output_text.delta":
                    seen_delta = time.perf_counter() - t0
                    break
            sse_frames(lines)
        if i == 0:
            cold = seen_delta
        t0 = time.perf_counter()
        rid = client.post("/responses", json=_body(conversation_of())).json()["id"]
        accepted = time.perf_counter() - t0
        # Let it finish: the next turn of the same conversation would otherwise queue behind it.
        with client.stream("GET", f"/responses/{rid}", params={"stream": "true"}) as r:
            sse_frames(r.iter_lines())
        if i >= warm_up:
            accepts.append(accepted)
            created.append(seen_created)
            first_delta.append(seen_delta)
    return {"accept": accepts, "created": created, "first_delta": first_delta, "cold": cold}


def bench_conversation(ctx, server) -> dict[str, Any]:
    n = 10 if ctx.quick else 30
    with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
        def fresh() -> str:
            return client.post("/conversations", json={}).json()["id"]

        first_turn = _turns(client, fresh, n, warm_up=5)
        long_id = _seed(ctx, server.schema, PRIOR_TURNS)
        long_turn = _turns(client, lambda: long_id, n, warm_up=2)
    figure: dict[str, Any] = {"prior_turns": PRIOR_TURNS, "prior_items": 2 * PRIOR_TURNS}
    for name, samples in (("turn_1", first_turn), ("turn_1000", long_turn)):
        cold = samples.pop("cold")
        figure[name] = {key: summary_ms(values) for key, values in samples.items()}
        figure[name]["cold_first_delta_ms"] = round(cold * 1000, 2)
    figure["accept_ratio"] = round(figure["turn_1000"]["accept"]["p50_ms"] / figure["turn_1"]["accept"]["p50_ms"], 2)
    figure["first_event_ratio"] = round(
        figure["turn_1000"]["first_delta"]["p50_ms"] / figure["turn_1"]["first_delta"]["p50_ms"], 2)
    figure["summary"] = (
        f"accept p50 {figure['turn_1']['accept']['p50_ms']} -> {figure['turn_1000']['accept']['p50_ms']} ms "
        f"(x{figure['accept_ratio']}); first delta p50 {figure['turn_1']['first_delta']['p50_ms']} -> "
        f"{figure['turn_1000']['first_delta']['p50_ms']} ms (x{figure['first_event_ratio']})")
    return figure


#: (what, target text, check) for bench.benchmark.TARGETS.
TARGET = ("turn 1,000 vs turn 1 (accept, first event)", f"within {TARGET_RATIO:g}x",
          lambda f: f["accept_ratio"] <= TARGET_RATIO and f["first_event_ratio"] <= TARGET_RATIO)
