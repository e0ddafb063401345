"""``large_input``: server memory for 10 MB inputs (``uv run bench --only large_input``).

One background run with a 10 MB input, then four at once, on a fresh server;
the server's RSS is sampled every 50 ms from the POST until the runs end. The
figure is the peak RSS above the idle server's, per MB of input.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil

INPUT_BYTES = 10_000_000


def _body(tag: int) -> dict[str, Any]:
    # Text a model could be sent (not one repeated character, which some layers might share).
    line = f"run {tag}: the quick brown fox jumps over the lazy dog 0123456789\n"
    text = (line * (INPUT_BYTES // len(line) + 1))[:INPUT_BYTES]
    return {"input": [{"role": "user", "content": text}], "background": True,
            "custom_inputs": {"deltas": 20, "pause": 0.25}}


def _peak_during(server, runs: int) -> tuple[float, float]:
    """(peak RSS in MiB while ``runs`` large runs are posted and run at once, seconds they took)."""
    proc = psutil.Process(server.proc.pid)
    peak = proc.memory_info().rss
    bodies = [_body(i) for i in range(runs)]
    started = time.monotonic()

    def post(body: dict) -> str:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            response = client.post("/responses", json=body)
            response.raise_for_status()
            return response.json()["id"]

    with ThreadPoolExecutor(runs) as pool:
        pending = [pool.submit(post, body) for body in bodies]
        while not all(f.done() for f in pending):
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.05)
        ids = [f.result() for f in pending]
    del bodies
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            peak = max(peak, proc.memory_info().rss)
            statuses = [client.get(f"/responses/{rid}").json()["status"] for rid in ids]
            if all(s not in ("queued", "in_progress") for s in statuses):
                break
            time.sleep(0.05)
    return peak / 2**20, time.monotonic() - started


def bench_large_input(_ctx, server) -> dict[str, Any]:
    mb = INPUT_BYTES / 1_000_000
    idle = psutil.Process(server.proc.pid).memory_info().rss / 2**20
    one_peak, one_seconds = _peak_during(server, 1)
    time.sleep(2)
    idle_again = psutil.Process(server.proc.pid).memory_info().rss / 2**20
    four_peak, four_seconds = _peak_during(server, 4)
    return {
        "input_mb": mb,
        "idle_rss_mib": round(idle, 1),
        "one_run_peak_rss_mib": round(one_peak, 1),
        "one_run_mib_per_input_mb": round((one_peak - idle) / mb, 2),
        "four_runs_peak_rss_mib": round(four_peak, 1),
        "four_runs_mib_per_input_mb": round((four_peak - idle_again) / (4 * mb), 2),
        "seconds": round(one_seconds + four_seconds, 1),
    }
