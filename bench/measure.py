"""Statistics, SSE parsing, CPU readings and the accept timing the benchmark's figures share."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import psutil

#: Accepts not counted at the start of a series (psycopg prepares a statement on its 6th use).
ACCEPT_WARM_UP = 20


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank on the sorted values)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 2), "p95_ms": round(pct(ms, 95), 2),
            "p99_ms": round(pct(ms, 99), 2), "max_ms": round(max(ms), 2) if ms else None}


def sse_frames(lines) -> list[dict]:
    """JSON frames of an SSE body, read to the end ([DONE] dropped)."""
    frames = []
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            frames.append(json.loads(line[6:]))
    return frames


def request_body(deltas: int, pause: float = 0.0, start_delay: float = 0.0, start_at: float = 0.0,
                 **flags) -> dict[str, Any]:
    return {"input": [{"role": "user", "content": "bench"}],
            "custom_inputs": {"deltas": deltas, "pause": pause, "start_delay": start_delay, "start_at": start_at},
            **flags}


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            total += sum(p.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def time_accepts(base_url: str, n: int, pause: float, warm_up: int = ACCEPT_WARM_UP) -> dict[str, Any]:
    """``n`` sequential ``POST /responses {background: true}`` on one keep-alive
    connection, ``pause`` seconds apart; time until the JSON with the id is parsed.
    The first ``warm_up`` are not counted (psycopg prepares a statement on its 6th use)."""
    times = []
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for i in range(warm_up + n):
            t0 = time.perf_counter()
            response = client.post("/responses", json=request_body(1, background=True))
            rid = response.json()["id"]
            elapsed = time.perf_counter() - t0
            assert rid.startswith("resp_"), response.text
            if i >= warm_up:
                times.append(elapsed)
            if pause:
                time.sleep(pause)
    return summary_ms(times)


def wait_until_idle(pids: list[int], deadline: float, window: float = 1.0, max_share: float = 0.05) -> None:
    """Wait (until ``deadline``, a ``time.monotonic()``) until these process trees together used
    under ``max_share`` of a core over ``window`` seconds: earlier work must not count as load."""
    while time.monotonic() < deadline:
        before = sum(map(tree_cpu_seconds, pids))
        time.sleep(window)
        if sum(map(tree_cpu_seconds, pids)) - before < max_share * window:
            return
