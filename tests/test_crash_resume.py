"""A worker killed with SIGKILL mid-run: another worker finishes the run by
itself, and a client that reconnects with its cursor misses nothing and sees
nothing twice."""

from __future__ import annotations

import time

import httpx

from tests.support import iter_sse, read_records, stream_frames, wait_for_status

FAST = {"heartbeat_interval_seconds": 1.0, "heartbeat_stale_threshold_seconds": 4.0,
        "stale_scan_interval_seconds": 0.5, "poll_interval_seconds": 0.2}
TERMINAL = {"completed", "failed", "cancelled", "incomplete"}


def test_killed_owner_is_resumed_by_another_worker(start_server, db_schema, tmp_path, sql):
    owner = start_server(db_schema, **FAST)
    survivor = start_server(db_schema, **FAST)
    record = tmp_path / "record.jsonl"
    body = {"input": [{"role": "user", "content": "go"}], "background": True, "stream": True,
            "context": {"conversation_id": "conv-1"},
            "custom_inputs": {"deltas": 30, "pause": 0.1, "record": str(record)}}
    seen = []
    with httpx.Client(base_url=owner.base_url, timeout=30) as client:
        with client.stream("POST", "/responses", json=body) as response:
            for frame in iter_sse(response.iter_lines()):
                seen.append(frame)
                if frame["sequence_number"] == 8:
                    break
    rid = seen[0]["response"]["id"]
    owner.kill()  # SIGKILL, the whole process group
    killed_at = time.monotonic()

    # No client request from here until the run is over: the survivor claims it itself.
    deadline = time.monotonic() + 30
    while sql(f"SELECT status FROM {db_schema}.responses WHERE response_id = %s", (rid,)) != [("completed",)]:
        assert time.monotonic() < deadline, "the run was not resumed"
        time.sleep(0.1)
    assert time.monotonic() - killed_at < 20

    with httpx.Client(base_url=survivor.base_url, timeout=30) as client:
        rest = stream_frames(client, "GET", f"/responses/{rid}",
                             params={"stream": "true", "starting_after": seen[-1]["sequence_number"]})
        final = wait_for_status(client, f"/responses/{rid}", TERMINAL)
    events = seen + rest[:-1]
    assert rest[-1] == "[DONE]"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))  # no gap, no repeat
    resumed = [e for e in events if e["type"] == "response.resumed"]
    assert len(resumed) == 1, (read_records(record), [(e["sequence_number"], e["type"]) for e in events])
    assert resumed[0]["attempt_number"] == 2 and resumed[0]["conversation_id"] == "conv-1::attempt-2"
    assert events[-1]["type"] == "response.completed"
    assert final["status"] == "completed" and final["attempt_number"] == 2
    assert final["output"][0]["content"][0]["text"].startswith("delta-0 delta-1")

    invocations = [r for r in read_records(record) if r["kind"] == "invoke"]
    assert len(invocations) == 2
    assert invocations[0]["recovery"] is False and invocations[1]["recovery"] is True
    assert invocations[1]["conversation_id"] == "conv-1::attempt-2"
    assert invocations[0]["pid"] != invocations[1]["pid"]


def test_two_workers_racing_for_stale_runs_each_run_is_claimed_once(start_server, db_schema, tmp_path, sql):
    doomed = start_server(db_schema, **FAST)
    record = tmp_path / "record.jsonl"
    with httpx.Client(base_url=doomed.base_url, timeout=30) as client:
        ids = [client.post("/responses", json={
            "input": "x", "background": True,
            # The first attempt holds after two deltas until the kill: on a slow machine
            # no run may finish before it.
            "custom_inputs": {"deltas": 5, "pause": 0.3, "record": str(record), "tag": f"run-{i}",
                              "hold_at": "delta:2", "hold": 120}}).json()["id"]
            for i in range(12)]
    time.sleep(0.5)
    doomed.kill()
    # Two workers start together and race for the same stale runs; with room
    # for only a few runs each, both keep claiming while the other does.
    racers = [start_server(db_schema, wait=False, max_concurrent_tasks=3, **FAST) for _ in range(2)]
    for racer in racers:
        racer.wait_until_healthy()
    deadline = time.monotonic() + 60
    while sql(f"SELECT count(*) FROM {db_schema}.responses WHERE status = 'completed'") != [(12,)]:
        assert time.monotonic() < deadline, "not every run was resumed"
        time.sleep(0.2)
    attempts = sql(f"SELECT attempt_number, count(*) FROM {db_schema}.responses GROUP BY 1")
    assert attempts == [(2, 12)]
    invocations = [r for r in read_records(record) if r["kind"] == "invoke"]
    for i in range(12):
        runs = [r for r in invocations if r["tag"] == f"run-{i}"]
        assert len(runs) == 2, runs  # attempt 1 on the killed worker, attempt 2 on exactly one racer
    racer_pids = {r["pid"] for r in invocations if r["recovery"]}
    assert racer_pids == {r.proc.pid for r in racers}  # both won some claims
    assert len(ids) == 12
