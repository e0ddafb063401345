"""Side by side with the reference server: ``uv run bench --only reference``.

The same synthetic agent (``harness/synthetic_agent.py``) behind our engine
(``python -m harness.synthetic_server``) and behind the reference
(``python -m bench.reference_server``: ``databricks-ai-bridge``'s
``LongRunningAgentServer`` with its default settings), one process each, on the
benchmark's PostgreSQL, driven by the same client. Both are warm: each waited
until ``/health`` answered and its CPU went idle. Each round measures every
phase on both servers, alternating which goes first, and each measurement
starts once both servers and PostgreSQL are idle, so neither pays for the
other's work; each figure is the median over the rounds.

- ``accept``: sequential ``POST /responses {background: true}`` on one
  keep-alive connection, time to the id (p50); the floor server
  (``bench/floor.py``: bare ASGI and the same durable INSERT, no framework, no
  run) is timed in the same rounds, since no server here can accept faster;
- ``first_frame``: sequential ``POST /responses {background: true, stream:
  true}``, time to the first SSE data frame (p50);
- ``throughput``: 20 runs at once, each ``POST /responses {background: true,
  stream: true}`` read to its end (the reference stores a run's events only
  when it runs the stream handler); the client only collects the bytes while
  the clock runs, then checks that every delta came back, in order, once;
  deltas per second and the server's CPU over the phase;
- ``restart``: one process SIGKILLed in the middle of a run and started again
  on the same tables; time from the kill until the resumed attempt's handler
  has stored a text delta in PostgreSQL. The client asks ``GET /responses/{id}`` every 100 ms
  once the new process answers, because the reference resumes a run only when
  a client asks for it.

``restart`` also runs ``uv run start-server`` (the template with its OpenAI
Agents agent and the offline model) against the same reference figure, so the
cost of importing a real agent is in the comparison.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import recovery, tool_calls
from bench.measure import request_body, summary_ms, time_accepts, tree_cpu_seconds, wait_until_idle
from harness.synthetic_agent import TEXT_PREFIX
from scripts.server_process import ServerProcess

FIGURE = "reference"

#: name -> (what, target text, check(figures) -> bool | None), as in benchmark.TARGETS
TARGET = ("side by side with the reference (x faster)", "accept 3, frame 8, ev/s 50, restart 2.5",
          lambda f: f["ratios"]["accept"] >= 3 and f["ratios"]["first_frame"] >= 8
          and f["ratios"]["throughput"] >= 50 and f["ratios"]["restart"] >= 2.5
          and f["ratios"]["restart_template"] >= 2.5)


def measured(f: dict) -> str:
    r = f["ratios"]
    return (f"accept x{r['accept']} (floor x{r['accept_floor']}), first frame x{r['first_frame']}, "
            f"throughput x{r['throughput']}, CPU x{r['throughput_cpu']}, restart x{r['restart']} "
            f"(template agent x{r['restart_template']})")


@dataclass
class Contender:
    """One server as the benchmark launches it, and where it stores its events."""

    name: str
    argv: list[str]
    env: dict[str, str]
    #: table of stream events with ``response_id`` and ``attempt_number`` columns (both engines have
    #: one), and its column that holds each event's JSON
    events_table: str
    event_column: str = "data"
    #: ``/health`` reports the database (ours): wait for it to be connected
    database_health: bool = True
    #: a restart trial's run, and how many of its events are stored before the kill
    body: dict[str, Any] = field(default_factory=lambda: request_body(400, 0.05))
    events_before_kill: int = 20

    def launch(self, log_dir: Path) -> ServerProcess:
        return ServerProcess(self.argv, env=self.env, log_path=log_dir / f"side-{self.name}.log").launch()

    def count(self, ctx, rid: str, resumed: bool = False) -> int:
        """Events stored for the run; with ``resumed``, text deltas of a later attempt: its handler
        runs again (a marker the server writes before the agent is even imported does not count)."""
        resumed_delta = (f" AND attempt_number > 1 AND {self.event_column} LIKE '%%response.output_text.delta%%'"
                         if resumed else "")
        return ctx.pg.value(f"SELECT count(*) FROM {self.events_table} WHERE response_id = %s{resumed_delta}",
                            (rid,))


#: A run of the template's agent long enough to be killed in (the offline model's fixed reply).
TEMPLATE_RUN = {"input": [{"role": "user", "content": "Hello"}]}


def contenders(ctx) -> dict[str, Contender]:
    common = {"MLFLOW_TRACKING_URI": f"sqlite:///{ctx.tmp}/mlflow-side.db", "SYNTHETIC_TRACING": "0",
              "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    template_argv, template_env = tool_calls.agent_command("openai", ctx.tmp)
    return {
        "ours": Contender(
            "ours", [sys.executable, "-m", "harness.synthetic_server"],
            {**common, **ctx.server_env,
             "SYNTHETIC_SERVER_KWARGS": json.dumps({"database_url": ctx.pg_url, "db_schema": "bench_side"})},
            "bench_side.events"),
        # Bare ASGI and the same durable INSERT: what no server on this machine accepts faster than.
        "floor": Contender(
            "floor", [sys.executable, "-m", "bench.floor"],
            {**common, "SYNTHETIC_SERVER_KWARGS": json.dumps({"database_url": ctx.pg_url,
                                                             "db_schema": "bench_side_floor"})},
            "bench_side_floor.events"),
        "reference": Contender(
            "reference", [sys.executable, "-m", "bench.reference_server"],
            {**common, "REFERENCE_DATABASE_URL": ctx.pg_url}, "agent_server.messages", "stream_event",
            database_health=False),
        # The template as a user starts it: the offline model's fixed reply, a token every 0.1 s.
        "start_server": Contender(
            "start_server", template_argv,
            {**template_env, "LOG_LEVEL": "WARNING", "DATABASE_URL": ctx.pg_url,
             "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0.1",
             "AGENT_SERVER_DB_SCHEMA": "bench_side_template"},
            "bench_side_template.events",
            body=TEMPLATE_RUN, events_before_kill=8),
        # The reference serving the same template agent (tracing on, as in start-server).
        "reference_template": Contender(
            "reference_template", [sys.executable, "-m", "bench.reference_server"],
            {**template_env, "LOG_LEVEL": "WARNING", "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0.1",
             "REFERENCE_DATABASE_URL": ctx.pg_url, "REFERENCE_AGENT_MODULE": "agent_server.agents.openai_agent"},
            "agent_server.messages", "stream_event", database_health=False, body=TEMPLATE_RUN,
            events_before_kill=8),
    }


def _warm(server: ServerProcess, contender: Contender, timeout: float = 180.0) -> None:
    """Healthy (with its database, for ours), then idle: start-up work must not count as load."""
    deadline = time.monotonic() + timeout
    recovery.wait_healthy(server, timeout, database=contender.database_health)
    wait_until_idle([server.pid], deadline)


def first_frames(base_url: str, n: int, warm_up: int = 5) -> dict[str, Any]:
    """``n`` sequential background + stream POSTs: time to the first SSE data frame; each stream read to its end."""
    times = []
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        for i in range(warm_up + n):
            t0 = time.perf_counter()
            with client.stream("POST", "/responses", json=request_body(1, background=True, stream=True)) as r:
                lines = r.iter_lines()
                for line in lines:
                    if line.startswith("data: "):
                        break
                elapsed = time.perf_counter() - t0
                for _ in lines:
                    pass
            if i >= warm_up:
                times.append(elapsed)
    return summary_ms(times)


def _problem(frames: list[dict], deltas: int) -> str | None:
    """Why a tailed log is not every delta once and in order (either server's frames)."""
    seqs = [f.get("sequence_number") for f in frames]
    if any(b <= a for a, b in zip(seqs, seqs[1:])):
        return "sequence numbers not increasing"
    texts = [f["delta"] for f in frames if f.get("type") == "response.output_text.delta"]
    if texts != [f"{TEXT_PREFIX}{i} " for i in range(deltas)]:
        return f"{len(texts)} deltas read back, expected {deltas} in order"
    return None


def throughput(server: ServerProcess, tasks: int, deltas: int) -> dict[str, Any]:
    async def post_and_read(client: httpx.AsyncClient) -> bytes:
        # Only the bytes while the clock runs: parsing every frame here would make this client,
        # on the same cores, the bottleneck of the faster server.
        async with client.stream("POST", "/responses", json=request_body(deltas, background=True, stream=True)) as r:
            return b"".join([chunk async for chunk in r.aiter_bytes()])

    async def run() -> tuple[float, list[bytes]]:
        limits = httpx.Limits(max_connections=tasks * 2, max_keepalive_connections=tasks * 2)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=600.0, limits=limits) as client:
            t0 = time.perf_counter()
            bodies = await asyncio.gather(*(post_and_read(client) for _ in range(tasks)))
            return time.perf_counter() - t0, bodies

    cpu_before = tree_cpu_seconds(server.pid)
    seconds, bodies = asyncio.run(run())
    cpu = tree_cpu_seconds(server.pid) - cpu_before
    logs = [[json.loads(line[6:]) for line in body.decode().splitlines()
             if line.startswith("data: ") and line != "data: [DONE]"] for body in bodies]
    problems = [p for frames in logs if (p := _problem(frames, deltas))]
    return {"deltas": tasks * deltas, "frames": sum(map(len, logs)), "seconds": round(seconds, 3),
            "deltas_per_second": round(tasks * deltas / seconds), "server_cpu_seconds": round(cpu, 3),
            "intact": not problems, "problems": problems[:3]}


def _start_streamed(base_url: str, body: dict) -> str:
    """Start a background + stream run and leave its stream after the first frame: the id.
    (Streamed, because the reference stores a run's events only when it runs the stream handler.)"""
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        with client.stream("POST", "/responses", json={**body, "background": True, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    return json.loads(line[6:])["response_id"]
    raise RuntimeError(f"no frame from {base_url}")


def restart_trial(ctx, contender: Contender) -> float:
    """Kill → first event of the resumed attempt, in seconds (one process, killed mid-run)."""
    server = contender.launch(ctx.tmp)
    try:
        _warm(server, contender)
        rid = _start_streamed(server.base_url, contender.body)
        deadline = time.monotonic() + 60
        while contender.count(ctx, rid) < contender.events_before_kill:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{contender.name}: the run stored too few events in 60 s: {server.log_tail()}")
            time.sleep(0.02)
    finally:
        server.kill()
    killed = time.monotonic()
    server = contender.launch(ctx.tmp)
    try:
        answering = False
        asked = 0.0
        deadline = killed + 120
        with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if contender.count(ctx, rid, resumed=True):
                    resumed = time.monotonic() - killed
                    break
                if time.monotonic() - asked >= (0.1 if answering else 0.01):
                    asked = time.monotonic()
                    try:
                        answering = client.get(f"/responses/{rid}").status_code == 200 or answering
                    except httpx.HTTPError:
                        pass
                time.sleep(0.01)
            else:
                raise RuntimeError(f"{contender.name}: not resumed 120 s after the kill: {server.log_tail()}")
            client.post(f"/responses/{rid}/cancel")  # the rest of the run would only take time
    finally:
        server.stop()
    return resumed


def _ratio(reference: float, ours: float) -> float:
    return round(reference / ours, 1) if ours else float("inf")


def run(ctx) -> dict[str, Any]:
    rounds = 2 if ctx.quick else 3
    n = 30 if ctx.quick else 50
    tasks, deltas = (20, 500) if ctx.quick else (20, 2500)
    trials = 1 if ctx.quick else 3
    pair = contenders(ctx)
    results: dict[str, dict[str, list]] = {name: {"accept": [], "first_frame": [], "throughput": []}
                                           for name in ("ours", "reference", "floor")}
    servers = {name: pair[name].launch(ctx.tmp) for name in ("ours", "reference", "floor")}
    try:
        for name, server in servers.items():
            _warm(server, pair[name])
        phases = {"accept": lambda server: time_accepts(server.base_url, n, 0.0),
                  "first_frame": lambda server: first_frames(server.base_url, n),
                  "throughput": lambda server: throughput(server, tasks, deltas)}
        for i in range(rounds):
            for phase, measure in phases.items():
                order = ("ours", "reference") if i % 2 == 0 else ("reference", "ours")
                for name in (*order, "floor") if phase == "accept" else order:
                    # The other server's last phase (and PostgreSQL's work after it) must not
                    # weigh on this one.
                    wait_until_idle([*(s.pid for s in servers.values()), ctx.pg_pid],
                                    time.monotonic() + 30, window=0.5)
                    results[name][phase].append(measure(servers[name]))
    finally:
        for server in servers.values():
            server.stop()
    restarting = [name for name in pair if name != "floor"]
    restarts: dict[str, list[float]] = {name: [] for name in restarting}
    for _ in range(trials):
        for name in restarting:
            restarts[name].append(round(restart_trial(ctx, pair[name]), 2))

    def median(name: str, phase: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name][phase])

    figures: dict[str, Any] = {}
    for name in ("ours", "reference"):
        figures[name] = {
            "accept_p50_ms": median(name, "accept", "p50_ms"),
            "first_frame_p50_ms": median(name, "first_frame", "p50_ms"),
            "deltas_per_second": median(name, "throughput", "deltas_per_second"),
            "throughput_server_cpu_seconds": median(name, "throughput", "server_cpu_seconds"),
            "restart_seconds": restarts[name], "restart_p50_seconds": statistics.median(restarts[name]),
            "rounds": results[name],
        }
    figures["floor"] = {"accept_p50_ms": median("floor", "accept", "p50_ms"), "accept_rounds": results["floor"]["accept"]}
    for name in ("start_server", "reference_template"):
        figures[name] = {"restart_seconds": restarts[name], "restart_p50_seconds": statistics.median(restarts[name])}
    ours, ref = figures["ours"], figures["reference"]
    figures["ratios"] = {
        "accept": _ratio(ref["accept_p50_ms"], ours["accept_p50_ms"]),
        # The most any server could reach here: the reference against the floor.
        "accept_floor": _ratio(ref["accept_p50_ms"], figures["floor"]["accept_p50_ms"]),
        "first_frame": _ratio(ref["first_frame_p50_ms"], ours["first_frame_p50_ms"]),
        "throughput": _ratio(ours["deltas_per_second"], ref["deltas_per_second"]),
        "throughput_cpu": _ratio(ref["throughput_server_cpu_seconds"], ours["throughput_server_cpu_seconds"]),
        "restart": _ratio(ref["restart_p50_seconds"], ours["restart_p50_seconds"]),
        "restart_template": _ratio(figures["reference_template"]["restart_p50_seconds"],
                                   figures["start_server"]["restart_p50_seconds"]),
    }
    figures["workload"] = {"accepts": n, "first_frames": n, "throughput_runs": tasks, "deltas_per_run": deltas,
                           "rounds": rounds, "restart_trials": trials}
    # Only our own logs decide whether the run is intact; the reference's problems are reported.
    figures["intact"] = all(r["intact"] for r in results["ours"]["throughput"])
    figures["reference_log_problems"] = sorted({p for r in results["reference"]["throughput"] for p in r["problems"]})
    return figures
