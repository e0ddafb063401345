"""Benchmarks of the long-running engine: ``uv run bench``.

Starts an embedded PostgreSQL in a temporary folder, then for each group of
figures a server process (``python -m harness.synthetic_server``, uvicorn on
127.0.0.1, the synthetic agent of ``harness/synthetic_agent.py``), and drives it
over HTTP from this process. Prints one JSON object with every figure, then a
short table against the targets. Figures are printed, never
asserted: a missed target does not change the exit code (a broken log does).

Figures (``--only`` takes a comma-separated subset of these names):

- ``accept``: 50 x ``POST /responses {background: true}``, time to the response id:
  back to back (the figure), then 10 ms apart; both also against the floor
  server ``bench/floor.py`` (bare ASGI plus the same durable INSERT).
- ``burst``: 400 background POSTs (200 with ``--quick``), 32 in flight at once;
  time to each id and the whole burst's wall time.
- ``first_event``: 50 x ``POST /responses {background: true, stream: true}``,
  time to the ``response.created`` frame.
- ``live``: tasks of 100 deltas 20 ms apart, tailed with
  ``GET /responses/{id}?stream=true``; per delta: receive time - emit time.
- ``across_workers``: the same with ``--workers 2``, the tail served by the
  worker that does not run the task.
- ``throughput``: 20 concurrent tasks x 500 deltas, no pause, every event
  streamed back and checked; events/s from the first POST to the last
  terminal frame; SQL transactions per 1,000 events.
- ``scale``: 1,000 concurrent tasks x 50 deltas 100 ms apart on one worker
  (``max_concurrent_tasks=1000``); every log checked; peak server RSS.
- ``resume``: ``--workers 2`` with default heartbeat settings; the owner
  worker is SIGKILLed mid-task; time from the kill to the first event of the
  new attempt.
- ``tool_calls``: tool executions for a run killed after its tool finished
  (``bench/tool_calls.py``: real ``start-server`` processes of both variants).
- ``conversation``: accept and first event at turn 1,000 of a conversation
  against turn 1 (``bench/conversation.py``).
- ``restart`` and ``start``: see ``bench/recovery.py`` (one worker killed and
  restarted; spawn to ``/health`` 200, ours and the reference server's).
- ``slow_readers``: server RSS growth while clients that read nothing hold background
  streams open, against the bytes they left unread (``bench/slow_readers.py``).
- ``warm_up``: accept p50 while MLflow's tracing warms up after start-up, against
  the same server idle (``bench/warm_up.py``).

Run everything: ``uv run bench``; a shorter pass: ``uv run bench --quick``. With
``--webhooks`` every server also sends its webhooks (``WEBHOOK_URL``) to a receiver on
127.0.0.1 that answers 204 at once (``harness/webhook_receiver.py``): run both ways and
compare the figures; the report counts the deliveries.
``--compare`` names every figure more than 15 % worse than ``bench/recorded.json``
(``bench/compare.py``); ``--record`` saves the run as that file.
"""

from __future__ import annotations

import argparse
import copy
import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

from bench import compare, side_by_side, slow_readers, tool_calls, warm_up
from bench.conversation import TARGET as CONVERSATION_TARGET, bench_conversation
from bench import recovery
from bench.measure import (pct, request_body, sse_frames, summary_ms, time_accepts, tree_cpu_seconds,
                           wait_until_idle)
from bench.memory import bench_large_input
from harness.synthetic_agent import TEXT_PREFIX
from harness.webhook_receiver import WebhookReceiver
from scripts.server_process import ServerProcess

PROJECT_ROOT = Path(__file__).resolve().parents[1]

FIGURES = ("accept", "burst", "first_event", "live", "throughput", "scale", "across_workers", "resume", *recovery.FIGURES,
           warm_up.FIGURE, tool_calls.FIGURE, "conversation", "large_input", slow_readers.FIGURE,
           side_by_side.FIGURE)

#: name -> (what, target text, check(figures) -> bool | None)
TARGETS: dict[str, tuple[str, str, Callable[[dict], bool | None]]] = {
    "accept": ("accept latency p50", "<= 3 ms", lambda f: f["p50_ms"] <= 3),
    "burst": ("burst: 32 POSTs in flight, p50", "reported", lambda f: None),
    "first_event": ("first event p50", "<= 5 ms", lambda f: f["p50_ms"] <= 5),
    "live": ("live delivery p50 / p95", "<= 5 / 20 ms", lambda f: f["p50_ms"] <= 5 and f["p95_ms"] <= 20),
    "across_workers": ("across workers p50", "<= 10 ms", lambda f: f["p50_ms"] <= 10),
    "throughput": ("throughput", ">= 10,000 events/s",
                   lambda f: f["intact"] and f["events_per_second"] >= 10_000),
    "scale": ("1,000 tasks: all intact, peak RSS", "< 1 GiB",
              lambda f: f["intact"] and f["peak_server_rss_mib"] < 1024),
    "resume": ("resume after SIGKILL (p50)", "<= 1 s", lambda f: f["p50_seconds"] <= 1),
    **recovery.TARGETS,
    warm_up.FIGURE: warm_up.TARGET,
    slow_readers.FIGURE: slow_readers.TARGET,
    side_by_side.FIGURE: side_by_side.TARGET,
    tool_calls.FIGURE: tool_calls.TARGET,
    "conversation": CONVERSATION_TARGET,  # bench/conversation.py
    "large_input": ("4 x 10 MB inputs at once: peak RSS", "< 1 GiB", lambda f: f["four_runs_peak_rss_mib"] < 1024),
}


# ----- helpers ------------------------------------------------------------------


def delta_text(i: int) -> str:
    """The text of the synthetic agent's delta ``i``."""
    return f"{TEXT_PREFIX}{i} "


def check_log(frames: list[dict], deltas: int, response_id: str | None = None) -> str | None:
    """Why a streamed (or stored) log is not intact, or None if it is."""
    if not frames:
        return "empty log"
    seqs = [f.get("sequence_number") for f in frames]
    if seqs != list(range(len(frames))):
        return f"sequence numbers not 0..{len(frames) - 1}: {seqs[:5]}..."
    if frames[0].get("type") != "response.created":
        return f"event 0 is {frames[0].get('type')}"
    rid = response_id or frames[0]["response"]["id"]
    if any(f.get("response_id") != rid for f in frames):
        return "an event of another response"
    body = [f for f in frames[1:] if f.get("type") != "response.resumed"]
    # A resumed attempt starts its deltas again; check the last attempt's run.
    starts = [i for i, f in enumerate(body) if f.get("type") == "response.output_text.delta"
              and f["delta"] == delta_text(0)]
    if starts:
        body = body[starts[-1]:]
    found = [f for f in body if f.get("type") == "response.output_text.delta"]
    if len(found) != deltas:
        return f"{len(found)} deltas, expected {deltas}"
    for i, f in enumerate(found):
        if f["delta"] != delta_text(i):
            return f"delta {i} carries {f['delta']!r}"
    if body[-2].get("type") != "response.output_item.done":
        return f"second to last event is {body[-2].get('type')}"
    if body[-1].get("type") != "response.completed":
        return f"last event is {body[-1].get('type')}"
    if body[-1]["response"]["output"][0]["content"][0]["text"] != "".join(map(delta_text, range(deltas))):
        return "final output text differs"
    return None


class CpuMeter:
    """CPU seconds used by the server and by PostgreSQL between start and stop."""

    def __init__(self, ctx: "Context", server: "Server"):
        self.pids = {"server": server.proc.pid, "postgres": ctx.pg_pid}
        self.start = {k: tree_cpu_seconds(pid) for k, pid in self.pids.items()}
        self.start["client"] = time.process_time()

    def used(self) -> dict[str, float]:
        """CPU seconds since the start: server, postgres, client."""
        used = {k: tree_cpu_seconds(pid) - self.start[k] for k, pid in self.pids.items()}
        used["client"] = time.process_time() - self.start["client"]
        return used

    def per_1000(self, events: int) -> dict[str, float]:
        return {f"{k}_cpu_ms_per_1000_events": round(v * 1e6 / max(events, 1), 1) for k, v in self.used().items()}


class RssSampler:
    """Peak resident memory of a process tree, sampled every 50 ms in a thread."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak_total = 0
        self.peak_process = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                sizes = []
                for p in procs:
                    try:
                        sizes.append(p.memory_info().rss)
                    except psutil.Error:
                        pass
                self.peak_total = max(self.peak_total, sum(sizes))
                self.peak_process = max(self.peak_process, max(sizes, default=0))
            except psutil.Error:
                pass
            self._stop.wait(0.05)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"peak_server_rss_mib": round(self.peak_total / 2**20, 1),
                "peak_worker_rss_mib": round(self.peak_process / 2**20, 1)}


class Pg:
    """Direct access to the benchmark database (for checks and statistics)."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)

    def value(self, sql: str, params: tuple = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def xact_commit(self) -> int:
        # Backends flush their statistics at most once a second.
        time.sleep(1.1)
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(self.value("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))


class Server(ServerProcess):
    """One server process (own process group) running ``module`` (the engine with the
    synthetic agent, or ``bench.floor``)."""

    def __init__(self, ctx: "Context", name: str, workers: int = 1, module: str = "harness.synthetic_server",
                 **kwargs):
        self.name = name
        self.schema = f"bench_{name}"
        self.workers = workers
        self.kwargs = {"database_url": ctx.pg_url, "db_schema": self.schema, **kwargs}
        super().__init__(
            [sys.executable, "-m", module, "--workers", str(workers)],
            env={"SYNTHETIC_SERVER_KWARGS": json.dumps(self.kwargs),
                 "MLFLOW_TRACKING_URI": f"sqlite:///{ctx.tmp}/mlflow-{name}.db",
                 "SYNTHETIC_TRACING": "1" if ctx.tracing else "0",
                 "LOG_LEVEL": "WARNING",  # a log line per run would be part of what is measured
                 "PYTHONUNBUFFERED": "1", **ctx.server_env},
            log_path=ctx.tmp / f"server-{name}.log",
        )
        self.command = " ".join(self.argv[1:])
        self.rss: RssSampler | None = None
        self.launch()

    def wait_ready(self, timeout: float = 90.0) -> "Server":
        """Healthy with a connected database on every worker, then idle."""
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited: {self.log_tail()}")
            # A fresh connection each time, so each worker gets a chance to answer.
            health = self.health()
            if health is not None and health.get("database", {}).get("status") == "connected":
                seen.add(health["worker"]["id"])
                if len(seen) >= self.workers:
                    self.rss = self.rss or RssSampler(self.proc.pid)
                    self.settle(deadline)
                    return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server {self.name} not ready in {timeout}s: {self.log_tail()}")

    def settle(self, deadline: float) -> None:
        """Wait until the server is idle: start-up work (MLflow's tracking store
        set-up runs in a thread after /health answers) must not count as load."""
        wait_until_idle([self.proc.pid], deadline)

    def stop(self) -> dict[str, float]:
        rss = self.rss.stop() if self.rss else {}
        super().stop()
        return rss


class Context:
    def __init__(self, tmp: Path, pg_url: str, quick: bool, tracing: bool = False,
                 server_env: dict[str, str] | None = None):
        self.tmp = tmp
        self.server_env = server_env or {}  # added to every engine server's environment
        self.tracing = tracing
        self.pg_url = pg_url
        self.quick = quick
        self.pg = Pg(pg_url)
        self.pg_pid = int((tmp / "pg" / "postmaster.pid").read_text().split()[0])


def pinned_client(base_url: str, avoid: set[str] = frozenset(), want: set[str] | None = None,
                  tries: int = 300) -> tuple[httpx.Client, str]:
    """A client with one keep-alive connection, to a worker not in ``avoid``.

    Each uvicorn worker accepts its own connections; the connection stays with
    the worker that accepted it, so ``/health`` on it tells which worker
    serves every later request on the same client.
    """
    for _ in range(tries):
        client = httpx.Client(base_url=base_url, timeout=60.0,
                              limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        try:
            worker = client.get("/health").json()["worker"]["id"]
        except (httpx.HTTPError, ValueError, KeyError):  # a worker starting or just killed
            client.close()
            time.sleep(0.1)
            continue
        if worker not in avoid and (want is None or worker in want):
            return client, worker
        client.close()
    raise RuntimeError(f"no connection to a worker other than {avoid} in {tries} tries")


# ----- figures -------------------------------------------------------------------


#: Back-to-back accepts over which the server's CPU per request is read (10 ms clock: 0.05 ms per request).
ACCEPT_CPU_SAMPLE = 200

#: Pause between paced accepts: long enough for the previous run to finish and the machine to go idle.
ACCEPT_PACE_SECONDS = 0.01


#: The webhook secret of ``--webhooks`` (32 bytes, base64): the receiver only counts deliveries.
BENCH_WEBHOOK_SECRET = "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXM="


def bench_accept(ctx: Context, server: Server) -> dict[str, Any]:
    """Back to back (the figure), then paced; then both against the floor server
    (``bench/floor.py``: bare ASGI plus the same durable INSERT)."""
    n = 10 if ctx.quick else 50
    time_accepts(server.base_url, 0, 0.0)  # the warm-ups, apart: the first requests cost more
    figure = {"pattern": "back_to_back", **time_accepts(server.base_url, n, 0.0, warm_up=0)}
    time.sleep(0.5)  # let the last runs finish
    # CPU does not depend on what else the machine runs, unlike the times: the server's
    # CPU per accepted request, its one-delta run included, over a pass of its own long
    # enough for the 10 ms resolution of the CPU clock.
    cpu_before = tree_cpu_seconds(server.proc.pid)
    time_accepts(server.base_url, ACCEPT_CPU_SAMPLE, 0.0, warm_up=0)
    time.sleep(0.5)
    figure["server_cpu_ms_per_request"] = round(
        (tree_cpu_seconds(server.proc.pid) - cpu_before) * 1000 / ACCEPT_CPU_SAMPLE, 2)
    figure["paced"] = {"pause_ms": ACCEPT_PACE_SECONDS * 1000, **time_accepts(server.base_url, n, ACCEPT_PACE_SECONDS)}
    floor = Server(ctx, "floor", module="bench.floor")
    try:
        floor.wait_ready()
        figure["floor"] = {"back_to_back": time_accepts(floor.base_url, n, 0.0),
                           "paced": time_accepts(floor.base_url, n, ACCEPT_PACE_SECONDS)}
    finally:
        floor.stop()
    return figure


def bench_burst(ctx: Context, server: Server) -> dict[str, Any]:
    """400 ``POST /responses {background: true}`` (one delta each), 32 in flight at once on 32
    connections: time to each id, and the whole burst's wall time."""
    total, in_flight = (200 if ctx.quick else 400), 32

    async def burst() -> tuple[list[float], float]:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, limits=limits) as client:
            body = request_body(1, background=True)
            await asyncio.gather(*[client.post("/responses", json=body) for _ in range(in_flight)])  # connect
            await asyncio.sleep(1.0)
            gate, times = asyncio.Semaphore(in_flight), []

            async def one() -> None:
                async with gate:
                    t0 = time.perf_counter()
                    response = await client.post("/responses", json=body)
                    times.append(time.perf_counter() - t0)
                    assert response.json()["id"].startswith("resp_"), response.text

            t0 = time.perf_counter()
            await asyncio.gather(*[one() for _ in range(total)])
            return times, time.perf_counter() - t0

    cpu = CpuMeter(ctx, server)
    times, wall = asyncio.run(burst())
    used = cpu.used()
    # Where the time goes: each process's CPU per request (the connecting POSTs included).
    per_request = {f"{k}_cpu_ms_per_request": round(v * 1000 / (total + in_flight), 2) for k, v in used.items()}
    return {**summary_ms(times), "posts": total, "in_flight": in_flight, "wall_seconds": round(wall, 3),
            **per_request}


def bench_first_event(ctx: Context, server: Server) -> dict[str, Any]:
    n = 10 if ctx.quick else 50
    times, broken = [], 0
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        for i in range(5 + n):
            t0 = time.perf_counter()
            with client.stream("POST", "/responses", json=request_body(1, background=True, stream=True)) as r:
                lines = r.iter_lines()
                for line in lines:
                    if line.startswith("data: "):
                        first = json.loads(line[6:])
                        break
                elapsed = time.perf_counter() - t0
                rest = sse_frames(lines)
            if check_log([first, *rest], 1) is not None:
                broken += 1
            if i >= 5:
                times.append(elapsed)
    return {**summary_ms(times), "broken_logs": broken}


def _tail_latencies(client: httpx.Client, response_id: str, deltas: int) -> tuple[list[float], str | None]:
    latencies, frames = [], []
    with client.stream("GET", f"/responses/{response_id}", params={"stream": "true"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            received = time.time()
            frame = json.loads(line[6:])
            frames.append(frame)
            if frame.get("type") == "response.output_text.delta":
                latencies.append(received - frame["emitted_at"])
    return latencies, check_log(frames, deltas, response_id)


def bench_live(ctx: Context, server: Server) -> dict[str, Any]:
    tasks, deltas = (2, 100) if ctx.quick else (5, 100)
    latencies, problems = [], []
    with httpx.Client(base_url=server.base_url, timeout=60.0) as poster, \
            httpx.Client(base_url=server.base_url, timeout=60.0) as tailer:
        for _ in range(tasks):
            rid = poster.post("/responses", json=request_body(deltas, 0.02, 0.3, background=True)).json()["id"]
            got, problem = _tail_latencies(tailer, rid, deltas)
            latencies += got
            if problem:
                problems.append(problem)
    return {**summary_ms(latencies), "tasks": tasks, "deltas_per_task": deltas, "intact": not problems,
            "problems": problems[:3]}


def bench_across_workers(ctx: Context, server: Server) -> dict[str, Any]:
    tasks, deltas = (2, 100) if ctx.quick else (5, 100)
    latencies, problems = [], []
    poster, owner = pinned_client(server.base_url)
    tailer, tail_worker = pinned_client(server.base_url, avoid={owner})
    try:
        for _ in range(tasks):
            rid = poster.post("/responses", json=request_body(deltas, 0.02, 0.3, background=True)).json()["id"]
            row_owner = ctx.pg.value(f"SELECT worker_id FROM {server.schema}.responses WHERE response_id = %s",
                                     (rid,))
            got, problem = _tail_latencies(tailer, rid, deltas)
            still = tailer.get("/health").json()["worker"]["id"]
            if row_owner == still or still != tail_worker:
                problems.append(f"tail not on the other worker (owner {row_owner}, tail {still})")
            latencies += got
            if problem:
                problems.append(problem)
    finally:
        poster.close()
        tailer.close()
    return {**summary_ms(latencies), "tasks": tasks, "deltas_per_task": deltas, "owner_worker": owner,
            "tail_worker": tail_worker, "intact": not problems, "problems": problems[:3]}


async def _post_and_tail(client: httpx.AsyncClient, body: dict) -> tuple[str, list[dict]]:
    rid = (await client.post("/responses", json=body)).json()["id"]
    frames = []
    async with client.stream("GET", f"/responses/{rid}", params={"stream": "true"}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                frames.append(json.loads(line[6:]))
    return rid, frames


def bench_throughput(ctx: Context, server: Server) -> dict[str, Any]:
    tasks, deltas = (20, 500)
    before = ctx.pg.xact_commit()
    cpu = CpuMeter(ctx, server)

    async def run() -> tuple[float, list[tuple[str, list[dict]]]]:
        limits = httpx.Limits(max_connections=tasks * 2, max_keepalive_connections=tasks * 2)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120.0, limits=limits) as client:
            t0 = time.perf_counter()
            results = await asyncio.gather(*(_post_and_tail(client, request_body(deltas, background=True))
                                             for _ in range(tasks)))
            return time.perf_counter() - t0, results

    elapsed, results = asyncio.run(run())
    streamed = sum(len(frames) for _, frames in results)
    cpu_figures = cpu.per_1000(streamed)
    after = ctx.pg.xact_commit()
    problems = [p for rid, frames in results if (p := check_log(frames, deltas, rid))]
    ids = [rid for rid, _ in results]
    stored = ctx.pg.value(f"SELECT count(*) FROM {server.schema}.events WHERE response_id = ANY(%s)", (ids,))
    if stored != streamed:
        problems.append(f"{stored} events stored, {streamed} streamed")
    transactions = after - before
    return {"tasks": tasks, "deltas_per_task": deltas, "events": streamed, "seconds": round(elapsed, 3),
            "events_per_second": round(streamed / elapsed), "intact": not problems, "problems": problems[:3],
            "sql_transactions": transactions,
            "sql_transactions_per_1000_events": round(transactions * 1000 / max(streamed, 1), 1), **cpu_figures}


#: Concurrent POSTs while the scale figure submits its tasks.
POST_CONNECTIONS = 8


def bench_scale(ctx: Context, server: Server) -> dict[str, Any]:
    tasks, deltas, pause = (200, 50, 0.1) if ctx.quick else (1000, 50, 0.1)
    before = ctx.pg.xact_commit()
    cpu = CpuMeter(ctx, server)

    # Every task waits for the same start time, so all of them run at once.
    start_at = time.time() + (5 if ctx.quick else 15)

    async def post_all() -> tuple[list[str], list[float]]:
        # 8 at a time: httpx's async pool costs the client 5.6 ms of CPU per request with
        # 32 connections against 1.75 ms with 8; at 32 the client, not the server, set the pace.
        limits = httpx.Limits(max_connections=POST_CONNECTIONS, max_keepalive_connections=POST_CONNECTIONS)
        sem = asyncio.Semaphore(POST_CONNECTIONS)
        accept: list[float] = []
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, limits=limits) as client:
            async def one() -> str:
                async with sem:
                    t0 = time.perf_counter()
                    body = request_body(deltas, pause, start_at=start_at, background=True)
                    response = await client.post("/responses", json=body)
                    accept.append(time.perf_counter() - t0)
                    return response.json()["id"]
            return list(await asyncio.gather(*(one() for _ in range(tasks)))), accept

    t0 = time.monotonic()
    ids, accept = asyncio.run(post_all())
    posted = time.monotonic() - t0
    deadline = time.monotonic() + 180
    done, peak_running = 0, 0
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        while time.monotonic() < deadline:
            peak_running = max(peak_running, client.get("/health").json()["worker"]["running"])
            done = ctx.pg.value(f"SELECT count(*) FROM {server.schema}.responses WHERE response_id = ANY(%s) "
                                "AND status NOT IN ('queued', 'in_progress')", (ids,))
            if done == tasks:
                break
            time.sleep(0.25)
    all_done = time.time() - start_at
    cpu_figures = cpu.per_1000(tasks * (deltas + 3))
    after = ctx.pg.xact_commit()
    statuses = dict(ctx.pg.rows(f"SELECT status, count(*) FROM {server.schema}.responses "
                                "WHERE response_id = ANY(%s) GROUP BY status", (ids,)))

    # Every log, streamed back over HTTP and checked.
    async def read_all() -> list[str]:
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        sem = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, limits=limits) as client:
            async def one(rid: str) -> str | None:
                async with sem:
                    async with client.stream("GET", f"/responses/{rid}", params={"stream": "true"}) as r:
                        frames = sse_frames([line async for line in r.aiter_lines()])
                    return check_log(frames, deltas, rid)
            return [p for p in await asyncio.gather(*(one(rid) for rid in ids)) if p]

    problems = asyncio.run(read_all())
    events = ctx.pg.value(f"SELECT count(*) FROM {server.schema}.events WHERE response_id = ANY(%s)", (ids,))
    return {"tasks": tasks, "deltas_per_task": deltas, "pause_seconds": pause, "completed": statuses.get("completed", 0),
            "statuses": statuses, "peak_running": peak_running,
            "post_all_seconds": round(posted, 2), "all_done_seconds_after_start": round(all_done, 2),
            "accept_under_load": summary_ms(accept), "events": events, "intact": done == tasks and not problems,
            "problems": problems[:3], "sql_transactions": after - before,
            "sql_transactions_per_1000_events": round((after - before) * 1000 / max(events, 1), 1), **cpu_figures}


def bench_resume(ctx: Context, server: Server) -> dict[str, Any]:
    trials = 1 if ctx.quick else 3
    threshold = server.kwargs.get("heartbeat_stale_threshold_seconds", 10.0)
    results, problems = [], []
    for _ in range(trials):
        poster, owner = pinned_client(server.base_url)
        try:
            rid = poster.post("/responses", json=request_body(400, 0.05, background=True)).json()["id"]
        finally:
            poster.close()
        row_owner = ctx.pg.value(f"SELECT worker_id FROM {server.schema}.responses WHERE response_id = %s", (rid,))
        deadline = time.monotonic() + 20
        while ctx.pg.value(f"SELECT max(sequence_number) FROM {server.schema}.events WHERE response_id = %s",
                           (rid,)) < 20:
            if time.monotonic() > deadline:
                raise RuntimeError("resume task did not start")
            time.sleep(0.05)
        pid = int(row_owner.split(":")[1])
        os.kill(pid, signal.SIGKILL)
        killed = time.time()
        first_new = None
        deadline = time.monotonic() + threshold + 20
        while time.monotonic() < deadline:
            if ctx.pg.value(f"SELECT 1 FROM {server.schema}.events WHERE response_id = %s AND attempt_number > 1 "
                            "LIMIT 1", (rid,)):
                first_new = time.time() - killed
                break
            time.sleep(0.01)
        if first_new is None:
            problems.append(f"{rid}: no new event {threshold + 20:.0f}s after the kill")
            continue
        results.append(first_new)
        resumed_by = ctx.pg.value(f"SELECT worker_id FROM {server.schema}.responses WHERE response_id = %s", (rid,))
        with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
            client.post(f"/responses/{rid}/cancel")  # the rest of the task would only take time
            with client.stream("GET", f"/responses/{rid}", params={"stream": "true"}) as r:
                frames = sse_frames(r.iter_lines())
        seqs = [f["sequence_number"] for f in frames]
        if seqs != list(range(len(frames))) or not any(f["type"] == "response.resumed" for f in frames):
            problems.append(f"{rid}: log not contiguous or not resumed")
        if resumed_by == row_owner:
            problems.append(f"{rid}: resumed by the killed worker?")
        # Wait for uvicorn to replace the killed worker before the next trial.
        server.wait_ready(timeout=90)
    return {"trials": len(results), "seconds": [round(s, 2) for s in results],
            "max_seconds": round(max(results), 2) if results else float("inf"),
            "p50_seconds": round(pct(results, 50), 2) if results else None,
            "stale_threshold_seconds": threshold, "heartbeat_interval_seconds":
            server.kwargs.get("heartbeat_interval_seconds", 3.0), "intact": not problems, "problems": problems}


# ----- driver --------------------------------------------------------------------

#: Server groups: (name, workers, constructor kwargs, figures run on it in order).
GROUPS = [
    ("one", 1, {}, ("accept", "first_event", "live", "throughput")),
    ("burst", 1, {}, ("burst",)),
    ("scale", 1, {"max_concurrent_tasks": 1000}, ("scale",)),
    ("two", 2, {}, ("across_workers", "resume")),
    ("tools", 1, {}, (tool_calls.FIGURE,)),  # its own agent servers; this one stays idle
    ("conversation", 1, {}, ("conversation",)),
    ("memory", 1, {}, ("large_input",)),
    ("slow", 1, {}, (slow_readers.FIGURE,)),
]

RUNNERS = {"accept": bench_accept, "burst": bench_burst, "first_event": bench_first_event, "live": bench_live,
           "throughput": bench_throughput, "scale": bench_scale, "across_workers": bench_across_workers,
           "resume": bench_resume, tool_calls.FIGURE: tool_calls.run, "conversation": bench_conversation,
           "large_input": bench_large_input, slow_readers.FIGURE: slow_readers.run}


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory, and the load average (other work on the machine skews every figure)."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def table(figures: dict[str, dict]) -> str:
    def measured(name: str, f: dict) -> str:
        if "error" in f:
            return f"ERROR {f['error'][:60]}"
        if name == "accept":
            floor, paced = f["floor"], f["paced"]
            return (f"p50 {f['p50_ms']} ms (floor {floor['back_to_back']['p50_ms']}); "
                    f"{paced['pause_ms']:g} ms apart {paced['p50_ms']} (floor {floor['paced']['p50_ms']}); "
                    f"CPU {f['server_cpu_ms_per_request']} ms/req")
        if name == "burst":
            return (f"{f['posts']} POSTs: p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, {f['wall_seconds']} s in all, "
                    f"CPU/req {f['server_cpu_ms_per_request']} server, {f['postgres_cpu_ms_per_request']} "
                    f"PG, {f['client_cpu_ms_per_request']} client")
        if name in ("first_event", "across_workers"):
            return f"p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms"
        if name == "live":
            return f"p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms"
        if name == "throughput":
            return (f"{f['events_per_second']:,} events/s, intact={f['intact']}, "
                    f"{f['sql_transactions_per_1000_events']} SQL tx/1k ev, "
                    f"CPU/1k ev {f['server_cpu_ms_per_1000_events']} ms server")
        if name == "scale":
            return (f"{f['completed']}/{f['tasks']} done {f['all_done_seconds_after_start']} s after start, "
                    f"{f['peak_running']} at once, intact={f['intact']}, "
                    f"RSS {f['peak_server_rss_mib']} MiB, {f['sql_transactions_per_1000_events']} SQL tx/1k events")
        if "summary" in f:
            return f["summary"]
        if name == "resume":
            return f"{f['seconds']} s (threshold {f['stale_threshold_seconds']:g} s)"
        if name == tool_calls.FIGURE:
            return tool_calls.measured(f)
        if name == warm_up.FIGURE:
            return warm_up.measured(f)
        if name == slow_readers.FIGURE:
            return slow_readers.measured(f)
        if name == side_by_side.FIGURE:
            return side_by_side.measured(f)
        if name in recovery.FIGURES:
            return recovery.measured(name, f)
        if name == "large_input":
            return (f"1 run {f['one_run_mib_per_input_mb']} MiB/MB, 4 runs {f['four_runs_mib_per_input_mb']} "
                    f"MiB/MB, peak {f['four_runs_peak_rss_mib']} MiB")
        return json.dumps(f)

    lines = [f"{'figure':<36} {'measured':<70} {'target':<24} ok"]
    for name in FIGURES:
        if name not in figures:
            continue
        what, target, check = TARGETS[name]
        f = figures[name]
        try:
            verdict = check(f)
            ok = "-" if verdict is None else ("yes" if verdict else "NO")  # None: reported, no target
        except (KeyError, TypeError):
            ok = "?"
        lines.append(f"{what:<36} {measured(name, f):<70} {target:<24} {ok}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the long-running agent server.")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(FIGURES)}")
    parser.add_argument("--quick", action="store_true", help="fewer samples and 200 instead of 1,000 scale tasks")
    parser.add_argument("--tracing", action="store_true",
                        help="MLflow tracing on in the server (to a SQLite tracking store in the temp folder); "
                             "off by default, so the figures are the engine's")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server logs)")
    parser.add_argument("--compare", nargs="?", const=str(compare.RECORDED), metavar="REPORT",
                        help="compare the figures with a saved report (default: bench/recorded.json) and name "
                             "every one more than 15%% worse (exit status 3 if any)")
    parser.add_argument("--record", action="store_true", help="save this run's report as bench/recorded.json")
    parser.add_argument("--webhooks", action="store_true",
                        help="servers send webhooks to a receiver on 127.0.0.1 (answers 204), to compare "
                             "the figures with and without")
    args = parser.parse_args(argv)
    selected = [s.strip() for s in args.only.split(",") if s.strip()] or list(FIGURES)
    unknown = set(selected) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s) {sorted(unknown)}; choose from {', '.join(FIGURES)}")

    sys.path.insert(0, str(PROJECT_ROOT))
    from agent_server.long_running.storage.embedded import EmbeddedPostgres

    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so servers and PostgreSQL are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    pg = EmbeddedPostgres(tmp / "pg")
    started = time.monotonic()
    load_before = round(os.getloadavg()[0], 2)
    figures: dict[str, dict] = {}
    servers: dict[str, str] = {}
    receiver = WebhookReceiver().start() if args.webhooks else None
    server_env = {"WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": BENCH_WEBHOOK_SECRET} if receiver else {}
    try:
        ctx = Context(tmp, pg.start(), args.quick, args.tracing, server_env)
        for group, workers, kwargs, names in GROUPS:
            wanted = [n for n in names if n in selected]
            if not wanted:
                continue
            server = Server(ctx, group, workers, **kwargs)
            try:
                server.wait_ready()
                servers[group] = f"{server.command} with {json.dumps({k: v for k, v in kwargs.items()})}"
                for name in wanted:
                    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
                    t0 = time.monotonic()
                    try:
                        figures[name] = RUNNERS[name](ctx, server)
                    except Exception as exc:  # report and go on with the other figures
                        figures[name] = {"error": f"{type(exc).__name__}: {exc}"}
                        print(server.log_tail(), file=sys.stderr)
                    print(f"[bench] {name} done in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
            finally:
                rss = server.stop()
                for name in wanted:
                    figures.get(name, {}).update(rss)
        figures.update(recovery.run(ctx, selected, lambda name: Server(ctx, name)))
        if warm_up.FIGURE in selected:
            print(f"[bench] {warm_up.FIGURE} ...", file=sys.stderr, flush=True)
            traced = copy.copy(ctx)
            traced.server_env = {**ctx.server_env, "SYNTHETIC_TRACING": "1"}
            server = Server(traced, warm_up.FIGURE)
            try:
                figures[warm_up.FIGURE] = warm_up.run(server)
            except Exception as exc:  # report and go on
                figures[warm_up.FIGURE] = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                server.stop()
        if side_by_side.FIGURE in selected:
            print(f"[bench] {side_by_side.FIGURE} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                figures[side_by_side.FIGURE] = side_by_side.run(ctx)
            except Exception as exc:  # report and go on
                figures[side_by_side.FIGURE] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"[bench] {side_by_side.FIGURE} done in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
        ctx.pg.conn.close()
    finally:
        if receiver is not None:
            receiver.stop()
        pg.stop()
        if args.keep:
            print(f"[bench] logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    webhooks = {"deliveries_received": len(receiver.deliveries)} if receiver is not None else None
    report = {"machine": {**machine(), "load_average_1m_at_start": load_before}, "tracing": args.tracing,
              "webhooks": webhooks, "command": "uv run bench " + " ".join(argv if argv is not None else sys.argv[1:]),
              "servers": servers, "seconds": round(time.monotonic() - started, 1), "figures": figures}
    print(json.dumps(report, indent=2))
    print()
    print(table(figures))
    broken = any(f.get("intact") is False or "error" in f for f in figures.values())
    if args.record:
        compare.RECORDED.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\n[bench] recorded in {compare.RECORDED}", file=sys.stderr)
    verdict = 0
    if args.compare:
        print()
        verdict = compare.compare(compare.load_report(Path(args.compare)), report)
    return 1 if broken else verdict


if __name__ == "__main__":
    sys.exit(main())
