"""Accept latency in the seconds after start-up, while MLflow's tracing warms up (figure ``warm_up``).

Once MLflow and the agent are imported (``/health`` says ``agent: ready``), the
server builds MLflow's tracking store and tracer in a thread (``tracing:
warming_up``; with a SQLite tracking store that runs its migrations). Accepts
are timed, 20 ms apart, from then until ``/health`` says ``tracing: ready``,
then the same number once the server is idle: the figure is their p50 ratio.
Tracing is on in this server (it is off in the others, so their figures are
the engine's).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from bench.measure import summary_ms

FIGURE = "warm_up"
#: (what, target text, check(figure) -> bool | None), as in benchmark.TARGETS
TARGET = ("accept p50 during tracing warm-up", "<= 2x steady",
          lambda f: f["p50_ratio"] <= 2 if f.get("p50_ratio") is not None else None)
PAUSE = 0.02


def measured(f: dict[str, Any]) -> str:
    if f.get("p50_ratio") is None:
        return f"no accept during the warm-up ({f['warming_seconds']} s)"
    return (f"warming p50 {f['warming']['p50_ms']} ms (n={f['warming']['n']}, {f['warming_seconds']} s), "
            f"steady {f['steady']['p50_ms']} ms (x{f['p50_ratio']})")


def run(server) -> dict[str, Any]:
    """``server``: a just-launched engine server with tracing on (not yet healthy)."""
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        health = _wait(client, lambda h: h.get("agent") == "ready" and h["database"]["status"] == "connected")
        started = time.monotonic()
        warming: list[float] = []
        while health.get("tracing") == "warming_up" and time.monotonic() - started < 60:
            warming.append(_accept(client))
            time.sleep(PAUSE)
            health = client.get("/health").json()
        warming_seconds = round(time.monotonic() - started, 2)
        time.sleep(2.0)  # idle: the runs accepted above have ended
        steady = []
        for _ in range(max(len(warming), 20)):
            steady.append(_accept(client))
            time.sleep(PAUSE)
    figure = {"warming": summary_ms(warming), "warming_seconds": warming_seconds, "steady": summary_ms(steady)}
    figure["p50_ratio"] = (round(figure["warming"]["p50_ms"] / figure["steady"]["p50_ms"], 2)
                           if warming else None)
    return figure


def _accept(client: httpx.Client) -> float:
    t0 = time.perf_counter()
    response = client.post("/responses", json={"input": "warm", "background": True,
                                               "custom_inputs": {"deltas": 1}})
    elapsed = time.perf_counter() - t0
    assert response.json()["id"].startswith("resp_"), response.text
    return elapsed


def _wait(client: httpx.Client, ready, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            health = client.get("/health").json()
            if ready(health):
                return health
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    raise TimeoutError("the server did not get ready")
