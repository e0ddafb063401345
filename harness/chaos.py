"""Fault injection against real server processes and a real PostgreSQL.

A small library (``tests/test_faults.py`` calls the scenarios and asserts on
what they return) and a CLI that runs them all and prints the figures::

    uv run python -m harness.chaos                 # every scenario, default sizes
    uv run python -m harness.chaos owner_killed claim_contention --runs-scale 0.5
    uv run python -m harness.chaos --json figures.json

Every server runs ``harness/synthetic_server.py`` (the scriptable agent of
``harness/synthetic_agent.py``) on 127.0.0.1; the CLI starts its own embedded
PostgreSQL in a temporary folder (a Unix socket, no TCP). Every scenario is
bounded: a fixed number of runs, a deadline on every wait, and every process
it starts is killed before it returns. Randomness (where a kill lands) comes
from a seeded ``random.Random``.

Figures, summed over scenarios:

- ``runs``: background runs subjected to a fault;
- ``runs_survived``: of those, runs that reached the status the scenario
  expects (``completed``; ``cancelled`` for a cancel; ``failed`` with
  ``task_timeout`` for a time-out; ``completed`` or ``failed`` with an error
  for a database restart) with a gap-free log ending in one terminal event;
- ``events_lost``: sequence numbers a resuming client never saw, plus handler
  deltas missing from the final attempt of a completed run;
- ``events_duplicated``: sequence numbers a client saw twice, plus handler
  deltas stored twice within one attempt;
- ``bad_inputs``: malformed or hostile requests sent (by the security tests);
- ``five_xx``: 5xx answers seen, other than the documented 503 while the
  database is down.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from scripts.server_process import ServerProcess, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TERMINAL = frozenset({"completed", "failed", "cancelled", "incomplete"})
TERMINAL_EVENTS = frozenset(f"response.{s}" for s in TERMINAL)
#: Fast heartbeats so a dead owner is noticed in seconds (the crash tests' 1s/4s).
FAST = {"heartbeat_interval_seconds": 1.0, "heartbeat_stale_threshold_seconds": 4.0,
        "stale_scan_interval_seconds": 0.5, "poll_interval_seconds": 0.2}


# ----- figures -------------------------------------------------------------------


@dataclass
class Figures:
    runs: int = 0
    runs_survived: int = 0
    events_lost: int = 0
    events_duplicated: int = 0
    bad_inputs: int = 0
    five_xx: int = 0

    def __iadd__(self, other: "Figures") -> "Figures":
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self


#: Figures of every scenario run in this process, by scenario name (summed).
RECORDED: dict[str, Figures] = {}
_recorded_lock = threading.Lock()


def record(scenario: str, figures: Figures) -> None:
    """Add a scenario's figures to this process's summary (and to $CHAOS_FIGURES_FILE)."""
    with _recorded_lock:
        RECORDED.setdefault(scenario, Figures())
        RECORDED[scenario] += figures
    path = os.environ.get("CHAOS_FIGURES_FILE")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"scenario": scenario, **asdict(figures)}) + "\n")


def total(recorded: dict[str, Figures] | None = None) -> Figures:
    result = Figures()
    for figures in (RECORDED if recorded is None else recorded).values():
        result += figures
    return result


def summary(recorded: dict[str, Figures] | None = None) -> str:
    """A plain-text table of the figures, one line per scenario and a total."""
    recorded = RECORDED if recorded is None else recorded
    names = list(asdict(Figures()))
    header = f"{'scenario':<24}" + "".join(f"{n:>18}" for n in names)
    lines = [header]
    for scenario, figures in recorded.items():
        lines.append(f"{scenario:<24}" + "".join(f"{v:>18}" for v in asdict(figures).values()))
    lines.append(f"{'total':<24}" + "".join(f"{v:>18}" for v in asdict(total(recorded)).values()))
    return "\n".join(lines)


# ----- processes ---------------------------------------------------------------


class Server(ServerProcess):
    """One ``harness/synthetic_server.py`` process (its own process group) on 127.0.0.1."""

    def __init__(self, pg_url: str, schema: str, log_dir: Path, workers: int = 1, **kwargs: Any):
        port = free_port()
        self.schema = schema
        super().__init__(
            [sys.executable, "-m", "harness.synthetic_server", "--workers", str(workers)],
            env={"SYNTHETIC_SERVER_KWARGS": json.dumps({"database_url": pg_url, "db_schema": schema, **kwargs}),
                 "MLFLOW_TRACKING_URI": f"sqlite:///{Path(log_dir).resolve()}/mlflow-{port}.db"},
            port=port,
            log_path=Path(log_dir) / f"server-{schema}-{port}.log",
        )

    def wait_healthy(self, timeout: float = 90.0) -> "Server":
        self.wait_until_healthy(timeout, database=True)
        return self


class Cluster:
    """Servers of one scenario; every one of them is killed on exit."""

    def __init__(self, pg_url: str, log_dir: Path, schema: str | None = None):
        self.pg_url = pg_url
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.schema = schema or f"chaos_{uuid.uuid4().hex[:12]}"
        self.servers: list[Server] = []
        self.record_path = self.log_dir / f"record-{self.schema}.jsonl"
        self._conn: psycopg.Connection | None = None

    def start(self, count: int = 1, workers: int = 1, **kwargs: Any) -> list[Server]:
        """Start ``count`` servers at once and wait until all are healthy."""
        started = [Server(self.pg_url, self.schema, self.log_dir, workers, **kwargs).launch() for _ in range(count)]
        self.servers.extend(started)
        for server in started:
            server.wait_healthy()
        self.warm_up(started)
        return started

    def warm_up(self, servers: list[Server]) -> None:
        """One short run on each server first: MLflow builds its tracing state on a process's first
        span, which can stall a fresh worker's event loop (and its heartbeats) for seconds under load."""
        rids = [create(server.base_url, {"deltas": 1, "tag": "warm-up"})["id"] for server in servers]
        wait_terminal(self, rids, 60)

    def sql(self, query: str, params: Any = None) -> list[tuple]:
        """Run SQL on the scenario's database (reconnecting after a restart)."""
        for attempt in range(20):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.pg_url, autocommit=True, connect_timeout=5)
                cur = self._conn.execute(query.replace("{schema}", self.schema), params)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt == 19:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def records(self) -> list[dict]:
        """The chaos agent's invocation record (one JSON object a line)."""
        if not self.record_path.exists():
            return []
        return [json.loads(line) for line in self.record_path.read_text().splitlines() if line.strip()]

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        for server in self.servers:
            server.kill()
        if self._conn is not None:
            self._conn.close()


# ----- requests and checks -------------------------------------------------------


def body(custom: dict[str, Any], stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"input": [{"role": "user", "content": "go"}], "background": True, "stream": stream,
            "custom_inputs": custom, **extra}


def create(base_url: str, custom: dict[str, Any], headers: dict | None = None) -> dict:
    """POST a background run; returns the Response object."""
    response = httpx.post(f"{base_url}/responses", json=body(custom), headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()


def read_stream(base_url: str, method: str, path: str, *, read_timeout: float = 30.0,
                frames: list | None = None, **kwargs: Any) -> tuple[list[dict], str]:
    """Read SSE frames until ``[DONE]`` or until the connection breaks.

    Returns the event frames and how it ended: ``"done"``, ``"dropped"``
    (connection closed or reset mid-stream) or ``"http <status>"``.
    """
    frames = [] if frames is None else frames
    timeout = httpx.Timeout(10.0, read=read_timeout)
    try:
        with httpx.Client(base_url=base_url, timeout=timeout) as client, \
                client.stream(method, path, **kwargs) as response:
            if response.status_code != 200:
                response.read()
                return frames, f"http {response.status_code}"
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line[6:]
                if payload == "[DONE]":
                    return frames, "done"
                frames.append(json.loads(payload))
    except (httpx.TransportError, httpx.StreamError):
        return frames, "dropped"
    return frames, "dropped"


def resume_stream(base_url: str, rid: str, seen: list[dict], headers: dict | None = None,
                  attempts: int = 3) -> tuple[list[dict], str]:
    """Reconnect with the last cursor until ``[DONE]`` (a bounded number of times)."""
    events = list(seen)
    how = "dropped"
    for _ in range(attempts):
        params = {"stream": "true"}
        if events:
            params["starting_after"] = str(events[-1]["sequence_number"])
        more, how = read_stream(base_url, "GET", f"/responses/{rid}", params=params, headers=headers,
                                read_timeout=15.0)
        events.extend(more)
        if how == "done":
            break
        time.sleep(0.5)
    return events, how


@dataclass
class LogCheck:
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.problems)


def check_client_view(events: list[dict]) -> LogCheck:
    """What a client saw: 0..N each once, in order, exactly one terminal event, last."""
    check = LogCheck()
    numbers = [e.get("sequence_number") for e in events]
    if not numbers:
        check.problems.append("no events")
        return check
    counts = Counter(numbers)
    check.duplicated = sum(c - 1 for c in counts.values())
    check.lost = len(set(range(max(numbers) + 1)) - set(counts))
    if numbers != sorted(numbers):
        check.problems.append("out of order")
    terminals = [e for e in events if e.get("type") in TERMINAL_EVENTS]
    if len(terminals) != 1 or events[-1].get("type") not in TERMINAL_EVENTS:
        check.problems.append(f"{len(terminals)} terminal events, last is {events[-1].get('type')}")
    return check


def stored_log(cluster: Cluster, rid: str) -> list[dict]:
    """The stored events of a response, parsed, each with its ``attempt_number`` column as ``_attempt``."""
    rows = cluster.sql("SELECT sequence_number, attempt_number, data FROM {schema}.events "
                       "WHERE response_id = %s ORDER BY sequence_number", (rid,))
    return [{**json.loads(data), "_attempt": attempt} for _seq, attempt, data in rows]


def check_stored(events: list[dict], expected_deltas: int | None = None) -> LogCheck:
    """The stored log: gap-free, one terminal event at the end, no handler event stored twice in one
    attempt; for a completed run, the final attempt's deltas all there (``expected_deltas``)."""
    check = check_client_view([{k: v for k, v in e.items() if k != "_attempt"} for e in events])
    by_attempt: dict[int, list[str]] = defaultdict(list)
    for event in events:
        if event.get("type") == "response.output_text.delta":
            by_attempt[event["_attempt"]].append(event["delta"])
    for deltas in by_attempt.values():
        check.duplicated += len(deltas) - len(set(deltas))
    if events and events[-1].get("type") == "response.completed" and expected_deltas is not None:
        final = by_attempt.get(events[-1]["_attempt"], [])
        check.lost += len({f"delta-{i} " for i in range(expected_deltas)} - set(final))
    return check


def wait_terminal(cluster: Cluster, rids: Iterable[str], timeout: float) -> dict[str, str]:
    """Poll the database (not the servers) until every response is terminal; returns their statuses."""
    rids = list(rids)
    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    while True:
        rows = cluster.sql("SELECT response_id, status FROM {schema}.responses WHERE response_id = ANY(%s)",
                           (rids,))
        statuses = dict(rows)
        if all(statuses.get(rid) in TERMINAL for rid in rids) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def invocations(records: list[dict], tag: str) -> list[dict]:
    return [r for r in records if r["kind"] == "invoke" and r.get("tag") == tag]


def run_threads(targets: list[Callable[[], Any]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    return threads


# ----- scenarios -----------------------------------------------------------------

#: Where a kill lands in a run (see ``hold_at`` in harness/synthetic_agent.py); "streaming" has no hold:
#: the run streams fast and the kill lands between whatever events are in flight.
KILL_POINTS = ("start", "delta", "tool", "end", "streaming")


@dataclass
class RunResult:
    rid: str
    tag: str
    plan: dict[str, Any]
    status: str | None = None
    attempt_number: int | None = None
    client: LogCheck | None = None
    stored: LogCheck | None = None
    invocations: list[dict] = field(default_factory=list)
    error: dict | None = None
    stream_end: str | None = None


@dataclass
class ScenarioResult:
    name: str
    figures: Figures
    runs: list[RunResult] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)


def _plan_run(rng: random.Random, index: int, point: str | None = None) -> dict[str, Any]:
    point = point or KILL_POINTS[index % len(KILL_POINTS)]
    deltas = rng.randint(4, 9)
    plan: dict[str, Any] = {"deltas": deltas, "pause": 0.02, "point": point}
    if point == "streaming":
        plan |= {"deltas": rng.randint(150, 250), "pause": 0.01, "wait_deltas": rng.randint(3, 40)}
        if rng.random() < 0.5:
            plan["tool_at"], plan["tool_seconds"] = rng.randint(1, 20), 0.2
        return plan
    plan["hold"] = 120.0  # far longer than the scenario: the kill always lands in the hold
    if point == "start":
        plan["hold_at"] = "start"
    elif point == "delta":
        plan["hold_at"] = f"delta:{rng.randint(1, deltas - 1)}"
    elif point == "tool":
        plan |= {"hold_at": "tool", "tool_at": rng.randint(0, deltas - 1), "tool_seconds": 0.1}
    elif point == "end":
        plan["hold_at"] = "end"
    return plan


def _custom(plan: dict[str, Any], record_path: Path, tag: str) -> dict[str, Any]:
    custom = {k: v for k, v in plan.items() if k not in ("point", "wait_deltas")}
    return {**custom, "record": str(record_path), "tag": tag}


def _reached(records: list[dict], tag: str, plan: dict[str, Any]) -> bool:
    """Has the first attempt of run ``tag`` reached the point where the kill should land?"""
    mine = [r for r in records if r.get("tag") == tag]
    if plan["point"] == "streaming":
        return sum(1 for r in mine if r["kind"] == "delta") >= plan["wait_deltas"]
    return any(r["kind"] == "hold" for r in mine)


def owner_killed(pg_url: str, log_dir: Path, runs: int = 20, seed: int = 20261127,
                 settle_timeout: float = 90.0) -> ScenarioResult:
    """Runs on an owner that is SIGKILLed with each run at a chosen point, a second worker alive.

    Every run is followed by a background+stream client from its first frame.
    After the kill no client request is made until every run is terminal
    (the survivor must claim them by itself); then each client resumes on the
    survivor with its last cursor.
    """
    rng = random.Random(seed)
    result = ScenarioResult("owner_killed", Figures(runs=runs))
    with Cluster(pg_url, log_dir) as cluster:
        owner, survivor = cluster.start(2, max_concurrent_tasks=max(runs, 10), **FAST)
        result.pids = {"owner": owner.pid, "survivor": survivor.pid}
        plans = [_plan_run(rng, i) for i in range(runs)]
        seen: list[list[dict]] = [[] for _ in range(runs)]
        ends: list[str | None] = [None] * runs

        def follow(i: int) -> None:
            custom = _custom(plans[i], cluster.record_path, f"run-{i}")
            _frames, ends[i] = read_stream(owner.base_url, "POST", "/responses",
                                           json=body(custom, stream=True), frames=seen[i])

        threads = run_threads([lambda i=i: follow(i) for i in range(runs)])
        wait_for(lambda: all(_reached(cluster.records(), f"run-{i}", plans[i]) for i in range(runs)),
                 60, "every run to reach its kill point")
        time.sleep(rng.uniform(0.2, 0.6))  # the kill lands at a seeded, arbitrary moment after that
        owner.kill()
        for thread in threads:
            thread.join(30)
        rids = [frames[0]["response"]["id"] for frames in seen]
        statuses = wait_terminal(cluster, rids, settle_timeout)  # no client request meanwhile
        result.notes["settled_without_clients"] = all(s in TERMINAL for s in statuses.values())
        records = cluster.records()
        for i, rid in enumerate(rids):
            run = RunResult(rid, f"run-{i}", plans[i], status=statuses.get(rid), stream_end=ends[i])
            events, stored = _resume_and_check(cluster, survivor.base_url, run, seen[i], plans[i]["deltas"])
            if [{k: v for k, v in e.items() if k != "_attempt"} for e in stored] != events:
                run.client.problems.append("the client's view differs from the stored log")
            run.invocations = invocations(records, f"run-{i}")
            _score(result.figures, run, expected="completed")
            result.runs.append(run)
    return result


def server_restarted(pg_url: str, log_dir: Path, runs: int = 8, seed: int = 7,
                     settle_timeout: float = 90.0) -> ScenarioResult:
    """A single-worker server killed with runs in flight (some running, some queued), then started again."""
    rng = random.Random(seed)
    result = ScenarioResult("server_restarted", Figures(runs=runs))
    capacity = max(1, runs // 2)
    with Cluster(pg_url, log_dir) as cluster:
        [first] = cluster.start(1, max_concurrent_tasks=capacity, **FAST)
        # The first ``capacity`` runs hold mid-stream (running when the kill lands); the rest wait queued
        # behind them, and run straight through once started.
        plans = [{"deltas": rng.randint(4, 9), "pause": 0.02, "point": "delta"}
                 | ({"hold_at": "delta:2", "hold": 120.0} if i < capacity else {}) for i in range(runs)]
        created = [create(first.base_url, _custom(plans[i], cluster.record_path, f"run-{i}")) for i in range(runs)]
        result.notes["initial_statuses"] = [c["status"] for c in created]
        wait_for(lambda: sum(1 for r in cluster.records() if r["kind"] == "hold") >= capacity, 30,
                 "the running runs to reach their hold")
        first.kill()
        [second] = cluster.start(1, max_concurrent_tasks=capacity, **FAST)
        result.pids = {"first": first.pid, "second": second.pid}
        rids = [c["id"] for c in created]
        statuses = wait_terminal(cluster, rids, settle_timeout)
        records = cluster.records()
        for i, rid in enumerate(rids):
            run = RunResult(rid, f"run-{i}", plans[i], status=statuses.get(rid))
            events, how = resume_stream(second.base_url, rid, [])
            run.client = check_client_view(events)
            if how != "done":
                run.client.problems.append(f"stream ended {how}")
            stored = stored_log(cluster, rid)
            run.stored = check_stored(stored, plans[i]["deltas"])
            run.attempt_number = stored[-1]["_attempt"] if stored else None
            run.invocations = invocations(records, f"run-{i}")
            _score(result.figures, run, expected="completed")
            result.runs.append(run)
    return result


def terminate_backends(cluster: Cluster) -> int:
    """``pg_terminate_backend`` on every connection of the cluster's servers (their last query names
    the scenario's schema); returns how many were terminated."""
    rows = cluster.sql(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND query LIKE %s",
        (f"%{cluster.schema}%",))
    return rows[0][0]


def postgres_restarted(pg_url: str, log_dir: Path, fault: Callable[[Cluster], Any], runs: int = 6,
                       seed: int = 11, settle_timeout: float = 90.0, name: str = "postgres_restarted",
                       outage_probe_seconds: float = 0.0) -> ScenarioResult:
    """Runs in flight, each followed by a streaming client, when ``fault(cluster)`` breaks the database
    (restarts it, or terminates the servers' connections).

    Every run must end ``completed`` or ``failed`` with an error message; no
    client stream may hang (each ends, by ``[DONE]`` or a dropped connection,
    within its read time-out, and a reconnect with its cursor sees the rest);
    no handler event is stored twice; afterwards the server serves new runs.
    """
    rng = random.Random(seed)
    result = ScenarioResult(name, Figures(runs=runs))
    with Cluster(pg_url, log_dir) as cluster:
        [server] = cluster.start(1, **FAST)
        result.pids = {"server": server.pid}
        plans = [{"deltas": rng.randint(40, 80), "pause": 0.05, "point": "streaming"} for _ in range(runs)]
        seen: list[list[dict]] = [[] for _ in range(runs)]
        ends: list[str | None] = [None] * runs
        ended_at: list[float | None] = [None] * runs

        def follow(i: int) -> None:
            custom = _custom(plans[i], cluster.record_path, f"run-{i}")
            _frames, ends[i] = read_stream(server.base_url, "POST", "/responses", read_timeout=20.0,
                                           json=body(custom, stream=True), frames=seen[i])
            ended_at[i] = time.monotonic()

        threads = run_threads([lambda i=i: follow(i) for i in range(runs)])
        wait_for(lambda: all(len(s) >= 5 for s in seen), 30, "every run to stream a few events")
        fault_at = time.monotonic()
        fault(cluster)
        # While the database is away or coming back, new requests get a clear answer, never a 500.
        statuses_during: Counter = Counter()
        probe_until = time.monotonic() + outage_probe_seconds
        while time.monotonic() < probe_until:
            try:
                answer = httpx.post(f"{server.base_url}/responses", json=body({"deltas": 1}), timeout=15)
                statuses_during[answer.status_code] += 1
            except httpx.HTTPError as exc:
                statuses_during[type(exc).__name__] += 1
            time.sleep(0.1)
        for thread in threads:
            thread.join(60)
        result.notes["streams_still_open"] = sum(t.is_alive() for t in threads)
        result.notes["stream_seconds_after_fault"] = [round((e or time.monotonic()) - fault_at, 1) for e in ended_at]
        result.notes["stream_ends"] = list(ends)
        result.notes["answers_during_outage"] = dict(statuses_during)
        result.figures.five_xx += sum(n for code, n in statuses_during.items()
                                      if isinstance(code, int) and code >= 500 and code != 503)
        wait_for(lambda: _healthy(server), 60, "the server to report healthy again")
        rids = [frames[0]["response"]["id"] for frames in seen if frames]
        statuses = wait_terminal(cluster, rids, settle_timeout)
        # It serves new work by itself afterwards.
        fresh = create(server.base_url, {"deltas": 3})
        fresh_status = wait_terminal(cluster, [fresh["id"]], 30)[fresh["id"]]
        result.notes["new_run_after_recovery"] = fresh_status
        records = cluster.records()
        for i, rid in enumerate(rids):
            run = RunResult(rid, f"run-{i}", plans[i], status=statuses.get(rid), stream_end=ends[i])
            _events, stored = _resume_and_check(cluster, server.base_url, run, seen[i], plans[i]["deltas"])
            run.error = stored[-1].get("response", {}).get("error") if stored else None
            run.invocations = invocations(records, f"run-{i}")
            _score(result.figures, run, expected={"completed", "failed"})
            result.runs.append(run)
    return result


def _resume_and_check(cluster: "Cluster", base_url: str, run: "RunResult", seen: list[dict],
                      deltas: int) -> tuple[list[dict], list[dict]]:
    """Resume the client's stream from its last cursor and check it and the stored log into ``run``."""
    events, how = resume_stream(base_url, run.rid, seen)
    run.client = check_client_view(events)
    if how != "done":
        run.client.problems.append(f"resumed stream ended {how}")
    stored = stored_log(cluster, run.rid)
    run.stored = check_stored(stored, deltas)
    run.attempt_number = stored[-1]["_attempt"] if stored else None
    return events, stored


def _healthy(server: Server) -> bool:
    try:
        return httpx.get(f"{server.base_url}/health", timeout=3).json().get("status") == "healthy"
    except (httpx.HTTPError, ValueError):
        return False


def claim_contention(pg_url: str, log_dir: Path, runs: int = 200, workers: int = 4,
                     settle_timeout: float = 180.0) -> ScenarioResult:
    """``runs`` runs on one owner that dies; ``workers`` worker processes race to resume them.

    Each attempt number of each run must be run by exactly one worker: the
    handler's own record (one ``invoke`` line per attempt, with its pid and
    the attempt parsed from its rotated conversation id) must match the
    stored log (one ``response.resumed`` event per later attempt) one to one.
    """
    result = ScenarioResult("claim_contention", Figures(runs=runs))
    with Cluster(pg_url, log_dir) as cluster:
        doomed = Server(pg_url, cluster.schema, cluster.log_dir, max_concurrent_tasks=runs + 10, **FAST).launch()
        racers = [Server(pg_url, cluster.schema, cluster.log_dir,
                         max_concurrent_tasks=max(2, runs // (2 * workers)), **FAST).launch()
                  for _ in range(workers)]
        cluster.servers.extend([doomed, *racers])
        for server in (doomed, *racers):
            server.wait_healthy()
        cluster.warm_up([doomed, *racers])
        result.pids = {"doomed": doomed.pid, **{f"racer-{n}": r.pid for n, r in enumerate(racers)}}
        plan = {"deltas": 4, "pause": 0.1, "hold_at": "delta:1", "hold": 120.0, "point": "delta"}
        with httpx.Client(base_url=doomed.base_url, timeout=30) as client:
            rids = [client.post("/responses", json=body(_custom(plan, cluster.record_path, f"run-{i}"))).json()["id"]
                    for i in range(runs)]
        def all_started() -> bool:
            # Every run holds on the doomed owner, or (a loaded owner misses heartbeats) was already
            # taken over by a racer, which is contention too.
            records = cluster.records()
            held = {r["tag"] for r in records if r["kind"] == "hold"}
            taken = {r["tag"] for r in records if r["kind"] == "invoke" and r["attempt"] > 1}
            return len(held | taken) >= runs

        wait_for(all_started, 120, "every run to reach its hold on the doomed owner")
        doomed.kill()
        killed_at = time.monotonic()
        statuses = wait_terminal(cluster, rids, settle_timeout)
        result.notes["settle_seconds"] = round(time.monotonic() - killed_at, 1)
        records = cluster.records()
        racer_pids = {r.pid for r in racers}
        claims_per_racer: Counter = Counter()
        for i, rid in enumerate(rids):
            run = RunResult(rid, f"run-{i}", plan, status=statuses.get(rid))
            stored = stored_log(cluster, rid)
            run.stored = check_stored(stored, plan["deltas"])
            run.client = LogCheck()
            run.attempt_number = stored[-1]["_attempt"] if stored else None
            run.invocations = invocations(records, f"run-{i}")
            resumed = Counter(e["attempt_number"] for e in stored if e.get("type") == "response.resumed")
            invoked = Counter(r["attempt"] for r in run.invocations)
            # Attempt 1 on the doomed owner; every later attempt stored once and run once, by a racer.
            expected_attempts = set(range(1, (run.attempt_number or 1) + 1))
            if set(invoked) != expected_attempts or any(n != 1 for n in invoked.values()):
                run.stored.problems.append(f"attempts invoked {dict(invoked)}, expected each of "
                                           f"{sorted(expected_attempts)} once")
            if set(resumed) != expected_attempts - {1} or any(n != 1 for n in resumed.values()):
                run.stored.problems.append(f"resumed events {dict(resumed)}")
            first = [r for r in run.invocations if r["attempt"] == 1]
            if not first or first[0]["pid"] != doomed.pid:
                run.stored.problems.append("attempt 1 did not run on the doomed owner")
            for inv in run.invocations:
                if inv["attempt"] > 1:
                    if inv["pid"] not in racer_pids:
                        run.stored.problems.append(f"attempt {inv['attempt']} ran on pid {inv['pid']}")
                    claims_per_racer[inv["pid"]] += 1
            _score(result.figures, run, expected="completed")
            result.runs.append(run)
        result.notes["claims_per_racer"] = {f"racer-{n}": claims_per_racer[r.pid] for n, r in enumerate(racers)}
        result.notes["attempt_numbers"] = dict(Counter(r.attempt_number for r in result.runs))
    return result


def _score(figures: Figures, run: RunResult, expected: str | set[str]) -> None:
    expected = {expected} if isinstance(expected, str) else expected
    figures.events_lost += (run.client.lost if run.client else 0) + (run.stored.lost if run.stored else 0)
    figures.events_duplicated += ((run.client.duplicated if run.client else 0)
                                  + (run.stored.duplicated if run.stored else 0))
    ok = run.status in expected and (run.client is None or run.client.ok) and (run.stored is None or run.stored.ok)
    if run.status == "failed":
        ok = ok and bool(run.error and run.error.get("message"))
    figures.runs_survived += int(ok)


# ----- CLI -----------------------------------------------------------------------

SCENARIOS = ("owner_killed", "server_restarted", "postgres_restarted", "backends_terminated", "claim_contention")


def _run_scenario(name: str, pg, log_dir: Path, scale: float) -> ScenarioResult:
    pg_url = pg.url
    n = lambda default: max(2, int(default * scale))  # noqa: E731
    if name == "owner_killed":
        return owner_killed(pg_url, log_dir, runs=n(20))
    if name == "server_restarted":
        return server_restarted(pg_url, log_dir, runs=n(8))
    if name == "postgres_restarted":
        return postgres_restarted(pg_url, log_dir, lambda _c: pg.restart(), runs=n(6), outage_probe_seconds=3.0)
    if name == "backends_terminated":
        return postgres_restarted(pg_url, log_dir, terminate_backends, runs=n(6), name="backends_terminated",
                                  outage_probe_seconds=2.0)
    if name == "claim_contention":
        return claim_contention(pg_url, log_dir, runs=n(200))
    raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", metavar="scenario",
                        help=f"any of: {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--runs-scale", type=float, default=1.0, help="multiply every scenario's run count")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    sys.path.insert(0, str(PROJECT_ROOT))
    from agent_server.long_running.storage.embedded import EmbeddedPostgres

    # A SIGTERM (a CI time-out) unwinds normally, so every server and the database are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    failures = 0
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        pg.start()
        try:
            for name in args.scenarios or SCENARIOS:
                started = time.monotonic()
                result = _run_scenario(name, pg, Path(tmp) / name, args.runs_scale)
                record(name, result.figures)
                bad = [r for r in result.runs if not ((r.client is None or r.client.ok) and r.stored.ok)]
                failures += result.figures.runs - result.figures.runs_survived
                print(f"{name}: {result.figures.runs_survived}/{result.figures.runs} survived "
                      f"in {time.monotonic() - started:.0f}s; notes {json.dumps(result.notes, default=str)}")
                for run in bad[:5]:
                    print(f"  {run.tag} {run.plan} status={run.status} client={run.client} stored={run.stored}")
        finally:
            pg.stop()
    print()
    print(summary())
    if args.json:
        args.json.write_text(json.dumps({k: asdict(v) for k, v in RECORDED.items()}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
