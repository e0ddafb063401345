"""Faults injected into real server processes and the real embedded PostgreSQL:
the protocol's promises (docs/protocol.md) must hold when things break.

The big scenarios live in ``harness/chaos.py`` (the CLI runs the same code and
prints the figures); these tests run them at the sizes below and assert on
every run. Sizes, chosen so this file stays around five minutes on 2 cores:

- owner killed: 20 runs, all in flight at once, killed at five kinds of point;
- whole server killed and restarted: 8 runs (4 running, 4 queued);
- PostgreSQL restarted / backends terminated: 6 streaming runs each;
- claim contention: 4 racing workers, 200 runs whose owner dies (~40s);
- cancel races, time-outs with a dead owner, queue pressure: a few runs each.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import httpx
import pytest

from harness import chaos
from tests.support import read_records, wait_for_status

FAST = chaos.FAST
TERMINAL = chaos.TERMINAL


def _failures(result: chaos.ScenarioResult) -> list[str]:
    return [f"{r.tag} {r.plan} status={r.status} client={r.client} stored={r.stored} "
            f"invocations={[(i['attempt'], i['pid']) for i in r.invocations]}"
            for r in result.runs
            if not ((r.client is None or r.client.ok) and (r.stored is None or r.stored.ok))]


# ----- owner killed ----------------------------------------------------------------


@pytest.mark.slow
def test_owner_killed_at_random_points_every_run_finishes_and_resumes_exactly(pg_url, tmp_path):
    result = chaos.owner_killed(pg_url, tmp_path, runs=20, seed=20261127)
    chaos.record("owner_killed", result.figures)
    assert not _failures(result), _failures(result)
    # Every run reached a terminal status with no client request after the kill.
    assert result.notes["settled_without_clients"]
    assert {r.plan["point"] for r in result.runs} == set(chaos.KILL_POINTS)
    for run in result.runs:
        assert run.status == "completed", run
        first, *later = sorted(run.invocations, key=lambda i: i["attempt"])
        assert first["attempt"] == 1 and first["pid"] == result.pids["owner"], run.invocations
        assert later and all(i["pid"] == result.pids["survivor"] for i in later), run.invocations
        assert run.attempt_number == max(i["attempt"] for i in run.invocations)
        assert [i["attempt"] for i in run.invocations] == list(range(1, run.attempt_number + 1))
    assert result.figures.runs_survived == 20
    assert result.figures.events_lost == result.figures.events_duplicated == 0


@pytest.mark.slow
def test_whole_server_killed_and_restarted_resumes_every_in_flight_run(pg_url, tmp_path):
    result = chaos.server_restarted(pg_url, tmp_path, runs=8)
    chaos.record("server_restarted", result.figures)
    assert not _failures(result), _failures(result)
    assert Counter(result.notes["initial_statuses"]) == {"in_progress": 4, "queued": 4}
    for run, initial in zip(result.runs, result.notes["initial_statuses"]):
        assert run.status == "completed"
        last = max(run.invocations, key=lambda i: i["attempt"])
        assert last["pid"] == result.pids["second"]
        if initial == "in_progress":  # was running when killed: resumed as a new attempt
            assert run.attempt_number >= 2 and run.invocations[0]["pid"] == result.pids["first"]
        else:  # was queued: never started before the kill, so its first attempt runs after the restart
            assert run.attempt_number >= 1


# ----- the database goes away ----------------------------------------------------------


def _assert_database_fault_survived(result: chaos.ScenarioResult) -> None:
    assert not _failures(result), _failures(result)
    assert result.notes["streams_still_open"] == 0, result.notes
    # No stream hung: each ended (with [DONE] or a dropped connection) well within its read time-out.
    assert max(result.notes["stream_seconds_after_fault"]) < 60, result.notes
    assert result.notes["new_run_after_recovery"] == "completed"
    for run in result.runs:
        assert run.status in ("completed", "failed"), run
        if run.status == "failed":
            assert run.error and run.error["message"], run
    assert result.figures.events_duplicated == 0 and result.figures.five_xx == 0, result.notes


@pytest.mark.slow
def test_postgres_restarted_mid_run(pg_url, embedded_pg, tmp_path):
    result = chaos.postgres_restarted(pg_url, tmp_path, lambda _cluster: embedded_pg.restart(), runs=6,
                                      outage_probe_seconds=3.0)
    chaos.record("postgres_restarted", result.figures)
    _assert_database_fault_survived(result)


@pytest.mark.slow
def test_server_connections_terminated_mid_run(pg_url, tmp_path):
    result = chaos.postgres_restarted(pg_url, tmp_path, chaos.terminate_backends, runs=6,
                                      name="backends_terminated", outage_probe_seconds=2.0)
    chaos.record("backends_terminated", result.figures)
    _assert_database_fault_survived(result)
    # A short outage heals by retrying: every run completes.
    assert all(run.status == "completed" for run in result.runs), [(r.tag, r.status, r.error) for r in result.runs]


# ----- claim contention ------------------------------------------------------------


@pytest.mark.slow
def test_claim_contention_each_attempt_runs_on_exactly_one_worker(pg_url, tmp_path):
    result = chaos.claim_contention(pg_url, tmp_path, runs=200, workers=4)
    chaos.record("claim_contention", result.figures)
    assert not _failures(result), _failures(result)[:5]
    assert all(run.status == "completed" for run in result.runs)
    # The racers really raced: more than one of them won claims.
    assert sum(1 for n in result.notes["claims_per_racer"].values() if n) >= 2, result.notes


# ----- cancel races ------------------------------------------------------------------


def _start_pair(start_server, schema, **kwargs):
    servers = [start_server(schema, wait=False, **kwargs) for _ in range(2)]
    for server in servers:
        server.wait_until_healthy(90)
    with httpx.Client(timeout=30) as client:  # warm up MLflow tracing in each (see chaos.Cluster.warm_up)
        rids = [(s, client.post(f"{s.base_url}/responses", json=chaos.body({"deltas": 1})).json()["id"])
                for s in servers]
        for server, rid in rids:
            wait_for_status(client, f"{server.base_url}/responses/{rid}", TERMINAL, timeout=60)
    return servers


def _create(server, **custom) -> dict:
    response = httpx.post(f"{server.base_url}/responses", json=chaos.body(custom), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _cancel(server, rid) -> httpx.Response:
    return httpx.post(f"{server.base_url}/responses/{rid}/cancel", timeout=30)


def _stored(sql, schema, rid) -> list[tuple[int, str]]:
    return sql(f"SELECT sequence_number, type FROM {schema}.events WHERE response_id = %s ORDER BY 1", (rid,))


def _assert_ended_once(sql, schema, rid, status: str) -> None:
    """One terminal event, the last one, matching the stored status; nothing after it."""
    events = _stored(sql, schema, rid)
    assert [seq for seq, _ in events] == list(range(len(events)))
    terminals = [t for _, t in events if t in chaos.TERMINAL_EVENTS]
    assert terminals == [f"response.{status}"] and events[-1][1] == f"response.{status}", events
    assert sql(f"SELECT status FROM {schema}.responses WHERE response_id = %s", (rid,)) == [(status,)]


def _stopped_emitting(records, tag, since: float) -> bool:
    """The handler of run ``tag`` recorded no delta after ``since`` + 1s."""
    return all(r["t"] < since + 1.0 for r in records if r.get("tag") == tag and r["kind"] == "delta")


@pytest.mark.slow
def test_cancel_races(start_server, db_schema, tmp_path, sql):
    a, b = _start_pair(start_server, db_schema, max_concurrent_tasks=2, **FAST)
    record = str(tmp_path / "record.jsonl")
    records = lambda: read_records(tmp_path / "record.jsonl")  # noqa: E731
    hold = {"hold_at": "delta:1", "hold": 60, "deltas": 5, "record": record}
    cancelled: dict[str, str] = {}  # rid -> tag, every run that must end cancelled

    # Fill both workers (two slots each), so the next run stays queued.
    fills = {f"fill-a{i}": _create(a, tag=f"fill-a{i}", **hold)["id"] for i in range(2)}
    fills |= {f"fill-b{i}": _create(b, tag=f"fill-b{i}", **hold)["id"] for i in range(2)}
    chaos.wait_for(lambda: sum(r["kind"] == "hold" for r in records()) == 4, 30, "the fills to hold")

    # 1. Cancel while queued, from the other worker: it never runs.
    queued = _create(a, tag="queued", record=record)
    assert queued["status"] == "queued"
    assert _cancel(b, queued["id"]).json()["status"] == "cancelled"
    cancelled[queued["id"]] = "queued"

    # 2. Cancel twice at once, from both workers, while running.
    rid = fills["fill-a0"]
    answers = []
    threads = [threading.Thread(target=lambda s=s: answers.append(_cancel(s, rid))) for s in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [r.status_code for r in answers] == [200, 200]
    assert {r.json()["status"] for r in answers} == {"cancelled"}
    cancelled[rid] = "fill-a0"

    # 3. Cancel from a worker that does not own the run (both directions), and from the owner.
    for tag, via in (("fill-a1", b), ("fill-b0", a), ("fill-b1", b)):
        assert _cancel(via, fills[tag]).json()["status"] == "cancelled"
        cancelled[fills[tag]] = tag

    # 4. Cancel a handler that is busy emitting, from the non-owner: it stops emitting.
    busy = _create(a, tag="busy", deltas=400, pause=0.02, record=record)["id"]
    chaos.wait_for(lambda: sum(r.get("tag") == "busy" and r["kind"] == "delta" for r in records()) >= 10,
                   30, "the busy run to emit")
    busy_cancelled_at = time.time()
    assert _cancel(b, busy).json()["status"] == "cancelled"
    cancelled[busy] = "busy"

    # 5. Cancel racing completion, at seeded random moments (some queued, some running, some done).
    import random

    rng = random.Random(5)
    racing = {}
    for i in range(10):
        rid = _create((a, b)[i % 2], tag=f"race-{i}", deltas=6, pause=0.05, record=record)["id"]
        time.sleep(rng.uniform(0, 0.4))
        racing[rid] = _cancel((b, a)[i % 2], rid).json()["status"]

    # 6. Cancel while resuming: two runs on A, A killed. One is cancelled at once (the dead owner's
    #    lock frees at once, so B may or may not have claimed it yet), the other right after B's
    #    resumed attempt starts. Both resumed attempts stream for seconds, so neither finishes first.
    stale_early = _create(a, tag="resume-early", **{**hold, "pause": 0.5})["id"]
    stale_late = _create(a, tag="resume-late", **{**hold, "deltas": 300, "pause": 0.05})["id"]
    chaos.wait_for(lambda: {r.get("tag") for r in records() if r["kind"] == "hold"} >= {"resume-early", "resume-late"},
                   30, "the runs to resume to hold")
    a.kill()
    assert _cancel(b, stale_early).json()["status"] == "cancelled"
    cancelled[stale_early] = "resume-early"
    chaos.wait_for(lambda: any(r.get("tag") == "resume-late" and r["kind"] == "invoke" and r["attempt"] == 2
                               for r in records()), 30, "B to resume the second run")
    late_cancelled_at = time.time()
    assert _cancel(b, stale_late).json()["status"] == "cancelled"
    cancelled[stale_late] = "resume-late"

    time.sleep(FAST["heartbeat_stale_threshold_seconds"] + 1.5)  # long enough for a wrong claim or write
    final = records()
    for rid, tag in cancelled.items():
        _assert_ended_once(sql, db_schema, rid, "cancelled")
    for rid, status in racing.items():
        assert status in ("cancelled", "completed")
        _assert_ended_once(sql, db_schema, rid, status)
    # Handlers stopped: every one that ran records its exit as cancelled, and emitted nothing late.
    for tag in ("fill-a0", "fill-a1", "fill-b0", "fill-b1", "busy"):
        exits = [r for r in final if r.get("tag") == tag and r["kind"] == "exit"]
        assert [e["how"] for e in exits] == ["cancelled"], (tag, exits)
    assert _stopped_emitting(final, "busy", busy_cancelled_at)
    assert _stopped_emitting(final, "resume-late", late_cancelled_at)
    assert [r for r in final if r.get("tag") == "queued"] == []  # never ran
    # A survivor may claim it (the dead owner's liveness lock frees at once) before the cancel lands;
    # then its resumed handler was stopped, and it stays cancelled (checked above).
    early_exits = [r["how"] for r in final if r.get("tag") == "resume-early" and r["kind"] == "exit"
                   and r.get("attempt") == 2]
    early_runs = [r for r in final if r.get("tag") == "resume-early" and r["kind"] == "invoke" and r["attempt"] == 2]
    assert early_exits == ["cancelled"] * len(early_runs)
    late_exits = [r["how"] for r in final if r.get("tag") == "resume-late" and r["kind"] == "exit" and r["attempt"] == 2]
    assert late_exits == ["cancelled"]
    # Nothing stored after a terminal event anywhere in the schema.
    assert sql(f"""SELECT count(*) FROM {db_schema}.events e JOIN (
                     SELECT response_id, min(sequence_number) AS t FROM {db_schema}.events
                     WHERE type IN ('response.completed','response.failed','response.cancelled','response.incomplete')
                     GROUP BY 1) term USING (response_id) WHERE e.sequence_number > term.t""") == [(0,)]
    figures = chaos.Figures(runs=len(cancelled) + len(racing), runs_survived=len(cancelled) + len(racing))
    chaos.record("cancel_races", figures)


# ----- time-outs -----------------------------------------------------------------------


@pytest.mark.slow
def test_timeout_fails_runs_whose_owner_died(start_server, db_schema, tmp_path, sql):
    """Two runs on A, A killed. B (one slot) resumes one, whose attempt then hits the deadline counted
    from the first start; the other is never claimed and B's sweep fails it. Both: failed, task_timeout."""
    timeout = 8.0
    owner = start_server(db_schema, wait=False, task_timeout_seconds=timeout, **FAST)
    survivor = start_server(db_schema, wait=False, task_timeout_seconds=timeout, max_concurrent_tasks=1, **FAST)
    for server in (owner, survivor):
        server.wait_until_healthy(90)
    record = tmp_path / "record.jsonl"
    rids = [_create(owner, tag=f"t{i}", deltas=400, pause=0.1, record=str(record))["id"] for i in range(2)]
    chaos.wait_for(lambda: sum(r["kind"] == "delta" for r in read_records(record)) >= 6, 30, "both to emit")
    owner.kill()
    with httpx.Client(base_url=survivor.base_url, timeout=30) as client:
        finals = [wait_for_status(client, f"/responses/{rid}", TERMINAL, timeout=timeout + 15) for rid in rids]
    for rid, final in zip(rids, finals):
        assert final["status"] == "failed", final
        assert final["error"]["code"] == "task_timeout" and "task_timeout_seconds" in final["error"]["message"]
        _assert_ended_once(sql, db_schema, rid, "failed")
    time.sleep(1.5)
    records = read_records(record)
    # Whichever run B resumed (one at a time: it has one slot) was stopped by the deadline counted from the
    # first start; the other was failed by B's sweep, or resumed only to hit the same deadline at once.
    resumed = [r for r in records if r["kind"] == "invoke" and r["attempt"] > 1]
    assert resumed and all(r["pid"] == survivor.proc.pid for r in resumed)
    for r in resumed:
        assert [e["how"] for e in records if e["kind"] == "exit" and e["tag"] == r["tag"] and e["attempt"] > 1] \
            == ["cancelled"]
    first_start = min(r["t"] for r in records if r["kind"] == "invoke")
    assert max(r["t"] for r in records if r["kind"] == "delta") < first_start + timeout + 2.0
    chaos.record("timeouts", chaos.Figures(runs=2, runs_survived=2))


# ----- queue pressure ------------------------------------------------------------------


@pytest.mark.slow
def test_queue_pressure_never_exceeds_the_limit_per_worker(start_server, db_schema, tmp_path, sql):
    limit = 3
    servers = _start_pair(start_server, db_schema, max_concurrent_tasks=limit, poll_interval_seconds=0.2)
    record = tmp_path / "record.jsonl"
    peak: dict[int, int] = defaultdict(int)
    stop = threading.Event()

    def watch(server):
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    running = client.get(f"{server.base_url}/health").json()["worker"]["running"]
                    peak[server.proc.pid] = max(peak[server.proc.pid], running)
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)

    watchers = [threading.Thread(target=watch, args=(s,), daemon=True) for s in servers]
    for watcher in watchers:
        watcher.start()
    created: list[dict] = []
    lock = threading.Lock()

    def submit(i):
        response = _create(servers[i % 2], tag=f"q{i}", deltas=5, pause=0.1, record=str(record))
        with lock:
            created.append(response)

    submitters = [threading.Thread(target=submit, args=(i,)) for i in range(5 * limit)]
    for thread in submitters:
        thread.start()
    for thread in submitters:
        thread.join(30)
    assert len(created) == 5 * limit
    assert Counter(c["status"] for c in created)["queued"] >= 5 * limit - 2 * limit
    statuses = chaos.wait_terminal(_Schema(sql, db_schema), [c["id"] for c in created], 90)
    stop.set()
    for watcher in watchers:
        watcher.join(5)
    assert set(statuses.values()) == {"completed"}, statuses
    # Per worker, never more handlers at once than the limit: replay the record (invoke starts, exit ends).
    records = sorted(read_records(record), key=lambda r: r["t"])
    running: Counter = Counter()
    for entry in records:
        if entry["kind"] == "invoke":
            running[entry["pid"]] += 1
            assert running[entry["pid"]] <= limit, entry
        elif entry["kind"] == "exit":
            running[entry["pid"]] -= 1
    assert {r["pid"] for r in records if r["kind"] == "invoke"} == {s.proc.pid for s in servers}
    assert max(peak.values()) <= limit and peak, peak
    chaos.record("queue_pressure", chaos.Figures(runs=5 * limit, runs_survived=5 * limit))


class _Schema:
    """Adapter so chaos.wait_terminal can poll through the ``sql`` fixture."""

    def __init__(self, sql, schema):
        self._sql, self.schema = sql, schema

    def sql(self, query, params=None):
        return self._sql(query.replace("{schema}", self.schema), params)
