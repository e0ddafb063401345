"""Recovery and start-up figures of ``uv run bench`` (registered in ``bench/benchmark.py``).

- ``restart``: one worker (synthetic agent, default heartbeat settings) is
  SIGKILLed mid-task and a new server process is started on the same schema;
  time from its ``/health`` 200 (database connected) to the first event of
  the resumed attempt. Negative when the run resumed before ``/health``
  answered (the first maintenance pass runs during start-up).
- ``start``: spawn to the first ``/health`` 200, interleaved trials of
  ``uv run start-server`` (the template as a user starts it: the OpenAI
  Agents variant, offline model, its own embedded PostgreSQL whose data
  folder is already initialised, no ``.env``), our engine with the synthetic
  agent (``python -m harness.synthetic_server``) and the reference server
  (``databricks_ai_bridge.long_running.LongRunningAgentServer`` 0.22, the
  same synthetic agent, see ``bench/reference_server.py``), both on the
  benchmark's PostgreSQL. Each is stopped (SIGTERM) before the next starts.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from scripts.server_process import ServerProcess

FIGURES = ("restart", "start")

#: name -> (what, target text, check(figures) -> bool | None), as in benchmark.TARGETS
TARGETS = {
    "restart": ("1 worker restarted: resumed after /health", "p50 <= 0.5 s",
                lambda f: f["p50_seconds"] <= 0.5),
    "start": ("spawn to /health 200 (p50)", "<= 3 s, < reference",
              lambda f: f["start_server"]["p50_seconds"] <= 3
              and f["start_server"]["p50_seconds"] < f["reference"]["p50_seconds"]),
}


def measured(name: str, f: dict) -> str:
    if name == "restart":
        return (f"p50 {f['p50_seconds']} s after /health ({f['seconds_after_health']}); "
                f"{f['seconds_after_kill']} s after the kill")
    return ", ".join(f"{k} p50 {v['p50_seconds']} s" for k, v in f.items() if isinstance(v, dict) and "p50_seconds" in v)


def _p50(values: list[float]) -> float | None:
    ordered = sorted(values)
    return round(ordered[len(ordered) // 2], 3) if ordered else None


def _first_resumed_event(ctx, schema: str, rid: str) -> bool:
    return bool(ctx.pg.value(f"SELECT 1 FROM {schema}.events WHERE response_id = %s AND attempt_number > 1 LIMIT 1",
                             (rid,)))


def wait_healthy(server: ServerProcess, timeout: float, poll: float = 0.01, database: bool = True) -> float:
    """time.monotonic() of the first /health 200 (with the database connected, for ours)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited: {server.log_tail()}")
        health = server.health(timeout=1.0)
        if health is not None and (not database or health.get("database", {}).get("status") == "connected"):
            return time.monotonic()
        time.sleep(poll)
    raise TimeoutError(f"not healthy in {timeout:.0f}s: {server.log_tail()}")


def bench_restart(ctx, make_server) -> dict[str, Any]:
    """``make_server(name)`` launches a synthetic server (benchmark.Server) on schema ``bench_<name>``."""
    trials = 1 if ctx.quick else 5
    after_health, after_kill, problems = [], [], []
    server = make_server("restart")
    server.wait_ready()
    schema = server.schema
    try:
        for _ in range(trials):
            with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
                rid = client.post("/responses", json={"input": [{"role": "user", "content": "bench"}],
                                                      "background": True,
                                                      "custom_inputs": {"deltas": 400, "pause": 0.05}}).json()["id"]
            deadline = time.monotonic() + 30
            while (ctx.pg.value(f"SELECT max(sequence_number) FROM {schema}.events WHERE response_id = %s",
                                (rid,)) or 0) < 20:
                if time.monotonic() > deadline:
                    raise RuntimeError("restart task did not start")
                time.sleep(0.05)
            if server.rss is not None:
                server.rss.stop()
            server.kill()
            killed = time.monotonic()
            server = make_server("restart")  # launched now
            healthy = None
            resumed = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (healthy is None or resumed is None):
                if resumed is None and _first_resumed_event(ctx, schema, rid):
                    resumed = time.monotonic()
                if healthy is None:
                    health = server.health(timeout=1.0)
                    if health is not None and health.get("database", {}).get("status") == "connected":
                        healthy = time.monotonic()
                time.sleep(0.01)
            if healthy is None or resumed is None:
                problems.append(f"{rid}: healthy={healthy is not None} resumed={resumed is not None} after 120 s")
                continue
            after_health.append(resumed - healthy)
            after_kill.append(resumed - killed)
            with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
                client.post(f"/responses/{rid}/cancel")  # the rest of the task would only take time
                with client.stream("GET", f"/responses/{rid}", params={"stream": "true"}) as r:
                    seqs = [json.loads(line[6:])["sequence_number"]
                            for line in r.iter_lines() if line.startswith("data: {")]
            if seqs != list(range(len(seqs))):
                problems.append(f"{rid}: log not contiguous")
            server.wait_ready()
    finally:
        server.stop()
    return {"trials": len(after_health), "p50_seconds": _p50(after_health),
            "seconds_after_health": [round(s, 3) for s in after_health],
            "seconds_after_kill": [round(s, 2) for s in after_kill],
            "heartbeat_stale_threshold_seconds": 10.0, "intact": not problems, "problems": problems}


def bench_start(ctx) -> dict[str, Any]:
    trials = 2 if ctx.quick else 5
    uv = shutil.which("uv")
    start_server = [uv, "run", "start-server"] if uv else [str(Path(sys.executable).parent / "start-server")]
    common = {"MLFLOW_TRACKING_URI": f"sqlite:///{ctx.tmp}/mlflow-start.db", "PYTHONUNBUFFERED": "1",
              "LOG_LEVEL": "WARNING"}
    variants = {
        "start_server": (start_server, {**common, "AGENT_SERVER_ENV_FILE": "", "HOST": "127.0.0.1",
                                        "EMBEDDED_POSTGRES_DIR": str(ctx.tmp / "start-pg")}, True),
        "synthetic": ([sys.executable, "-m", "harness.synthetic_server"],
                      {**common, "SYNTHETIC_TRACING": "0", "SYNTHETIC_SERVER_KWARGS":
                       json.dumps({"database_url": ctx.pg_url, "db_schema": "bench_start"})}, True),
        "reference": ([sys.executable, "-m", "bench.reference_server"],
                      {**common, "SYNTHETIC_TRACING": "0", "REFERENCE_DATABASE_URL": ctx.pg_url}, False),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}

    def launch(name: str) -> ServerProcess:
        argv, env, _ = variants[name]
        server = ServerProcess(argv, env=env, log_path=ctx.tmp / f"server-start-{name}.log")
        for var in [v for v in server.env if v == "DATABASE_URL" or v.startswith("LAKEBASE_")]:
            del server.env[var]  # the template's own choice: the embedded PostgreSQL
        return server.launch()

    # Untimed: initialises start-server's embedded data folder and the reference's tables.
    for name in ("start_server", "reference"):
        server = launch(name)
        try:
            wait_healthy(server, 180, database=variants[name][2])
        finally:
            server.stop()
    for _ in range(trials):
        for name in variants:
            spawned = time.monotonic()
            server = launch(name)
            try:
                seconds[name].append(wait_healthy(server, 180, database=variants[name][2]) - spawned)
            finally:
                server.stop()
    return {name: {"p50_seconds": _p50(values), "seconds": [round(s, 2) for s in values],
                   "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(variants[name][0]))}
            for name, values in seconds.items()}


def run(ctx, selected: list[str], make_server) -> dict[str, dict]:
    """The selected figures of this module (each one's error reported, not raised)."""
    figures = {}
    for name in [n for n in FIGURES if n in selected]:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            figures[name] = bench_restart(ctx, make_server) if name == "restart" else bench_start(ctx)
        except Exception as exc:
            figures[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"[bench] {name} done in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
    return figures
