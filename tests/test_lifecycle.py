"""Time-outs, the queue, a missing database, and the official OpenAI client."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support import read_records, stream_frames, wait_for_status

TERMINAL = {"completed", "failed", "cancelled", "incomplete"}


def _body(**custom):
    return {"input": [{"role": "user", "content": "hi"}], "background": True, "custom_inputs": custom}


def test_task_timeout_fails_with_task_timeout_stored_or_not(start_server, db_schema):
    """Stored and unstored runs share one attempt lifecycle: past task_timeout_seconds both end
    failed with code task_timeout."""
    server = start_server(db_schema, task_timeout_seconds=1.0)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        rid = client.post("/responses", json=_body(deltas=100, pause=0.1)).json()["id"]
        done = wait_for_status(client, f"/responses/{rid}", TERMINAL, timeout=15)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "task_timeout"
        assert "task_timeout_seconds" in done["error"]["message"]
        frames = stream_frames(client, "GET", f"/responses/{rid}", params={"stream": "true"})
        assert frames[-2]["type"] == "response.failed"
        assert [f["sequence_number"] for f in frames[:-1]] == list(range(len(frames) - 1))

        unstored = {"input": [{"role": "user", "content": "hi"}], "store": False,
                    "custom_inputs": {"deltas": 100, "pause": 0.1}}
        answer = client.post("/responses", json=unstored)
        assert answer.status_code == 200 and answer.headers["x-response-stored"] == "false"
        assert answer.json()["status"] == "failed"
        assert answer.json()["error"]["code"] == "task_timeout"
        frames = stream_frames(client, "POST", "/responses", json={**unstored, "stream": True})
        assert frames[-2]["type"] == "response.failed" and frames[-2]["response"]["error"]["code"] == "task_timeout"
        assert [f["sequence_number"] for f in frames[:-1]] == list(range(len(frames) - 1))


def test_queue_holds_work_beyond_capacity_and_drains(start_server, db_schema, tmp_path):
    server = start_server(db_schema, max_concurrent_tasks=2, poll_interval_seconds=0.2)
    record = tmp_path / "record.jsonl"
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        started = [client.post("/responses", json=_body(deltas=3, pause=0.1, record=str(record))).json()
                   for _ in range(6)]
        assert [s["status"] for s in started[:2]] == ["in_progress", "in_progress"]
        assert {s["status"] for s in started[2:]} == {"queued"}
        assert all(s["attempt_number"] == 0 for s in started[2:])
        # A queued response can be cancelled before it ever runs.
        cancelled = client.post(f"/responses/{started[5]['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        finals = [wait_for_status(client, f"/responses/{s['id']}", TERMINAL, timeout=30) for s in started]
        assert [f["status"] for f in finals] == ["completed"] * 5 + ["cancelled"]
        assert all(f["attempt_number"] == 1 for f in finals[:5])
    invocations = [r for r in read_records(record) if r["kind"] == "invoke"]
    assert len(invocations) == 5  # the cancelled one never ran
    # Never more than two handlers at once: replay the record's timeline.
    events = sorted(read_records(record), key=lambda r: r["t"])
    assert max(_concurrency(events)) <= 2


def _concurrency(events):
    """Running handlers after each record entry (an invoke starts one; its 3rd delta ends it)."""
    running, counts, deltas = 0, [], 0
    for entry in events:
        if entry["kind"] == "invoke":
            running += 1
        elif entry["kind"] == "delta" and entry["i"] == 2:
            running -= 1
        counts.append(running)
    return counts


def test_without_a_database_background_is_503_and_standard_still_works(start_server, db_schema, tmp_path):
    missing = f"postgresql://postgres@/postgres?host={tmp_path}/no-such-socket-dir"
    server = start_server(db_schema, database_url=missing)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        response = client.post("/responses", json=_body(deltas=1))
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "background_unavailable"
        assert "no-such-socket-dir" in error["message"]
        standard = client.post("/responses", json={"input": "hi", "custom_inputs": {"deltas": 1}})
        assert standard.status_code == 200 and standard.json()["output"]
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["background_mode"] is False
        assert health["database"]["status"] == "unavailable"
        assert client.get(f"/responses/resp_{'1' * 32}").status_code == 503


def test_official_openai_client(shared_server):
    client = openai.OpenAI(base_url=shared_server.base_url, api_key="unused")
    created = client.responses.create(model="agent", input="hi", background=True,
                                      extra_body={"custom_inputs": {"deltas": 3, "pause": 0.05}})
    assert created.status in ("queued", "in_progress")
    deadline = time.monotonic() + 30
    while (current := client.responses.retrieve(created.id)).status not in TERMINAL:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert current.output_text == "delta-0 delta-1 delta-2 "

    resumed = list(client.responses.retrieve(created.id, stream=True, starting_after=2))
    # 3 the content part, 4-6 the deltas, 7 text done, 8 part done, 9 the item, 10 completed
    assert [e.sequence_number for e in resumed] == list(range(3, 11)), [(e.type, e.sequence_number) for e in resumed]
    assert resumed[-1].type == "response.completed"

    streamed = list(client.responses.create(model="agent", input="hi", background=True, stream=True,
                                            extra_body={"custom_inputs": {"deltas": 2}}))
    assert streamed[0].type == "response.created"
    assert streamed[-1].type == "response.completed"
    assert streamed[-1].response.output_text == "delta-0 delta-1 "
    assert "".join(e.delta for e in streamed if e.type == "response.output_text.delta") == "delta-0 delta-1 "

    running = client.responses.create(model="agent", input="hi", background=True,
                                      extra_body={"custom_inputs": {"deltas": 100, "pause": 0.05}})
    assert client.responses.cancel(running.id).status == "cancelled"
    client.responses.delete(running.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(running.id)


def test_log_level_governs_uvicorn_lines_too(start_server, db_schema):
    """LOG_LEVEL=WARNING quiets uvicorn's access log as well; the default INFO keeps it."""
    servers = {level: start_server(f"{db_schema}_{level.lower()}", env={"LOG_LEVEL": level})
               for level in ("WARNING", "INFO")}
    for server in servers.values():
        assert httpx.get(f"{server.base_url}/agent/info", timeout=10).status_code == 200
        server.stop()
    logs = {level: server.log_path.read_text() for level, server in servers.items()}
    assert '"GET /agent/info HTTP/1.1" 200' in logs["INFO"]
    assert "GET /agent/info" not in logs["WARNING"]
    assert "Application startup complete" not in logs["WARNING"]
