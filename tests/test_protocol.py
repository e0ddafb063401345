"""The protocol (docs/protocol.md), rule by rule, over real HTTP against a real server process
and the embedded PostgreSQL. The synthetic agent (harness/synthetic_agent.py)
does what each request's ``custom_inputs`` says."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.support import read_records, stream_frames, wait_for_status

TERMINAL = {"completed", "failed", "cancelled", "incomplete"}


def create(client: httpx.Client, headers: dict | None = None, **custom) -> dict:
    body = {"input": [{"role": "user", "content": "hello"}], "background": True, "custom_inputs": custom}
    response = client.post("/responses", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def output_text(response: dict) -> str:
    return "".join(
        part["text"] for item in response["output"] if item["type"] == "message"
        for part in item["content"] if part["type"] == "output_text"
    )


def test_background_poll_returns_at_once_then_completes(client):
    started = create(client, deltas=3, pause=0.2)
    assert re.fullmatch(r"resp_[0-9a-f]{32}", started["id"])
    assert started["status"] in ("queued", "in_progress")
    assert started["object"] == "response" and started["background"] is True
    assert started["output"] == [] and started["error"] is None

    done = wait_for_status(client, f"/responses/{started['id']}", TERMINAL)
    assert done["status"] == "completed"
    assert output_text(done) == "delta-0 delta-1 delta-2 "
    assert done["attempt_number"] == 1
    assert done["model"] == started["model"]
    assert done["created_at"] == started["created_at"]
    assert done["error"] is None and done["incomplete_details"] is None


def test_background_stream_is_the_event_log(client):
    frames = stream_frames(client, "POST", "/responses", json={
        "input": [{"role": "user", "content": "hi"}], "background": True, "stream": True,
        "custom_inputs": {"deltas": 4}})
    assert frames[-1] == "[DONE]"
    events = frames[:-1]
    rid = events[0]["response"]["id"]
    assert events[0]["type"] == "response.created"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert all(e["response_id"] == rid for e in events)
    assert [e["type"] for e in events[1:]] == [
        "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    item_id = events[2]["item"]["id"]
    assert item_id.startswith("msg_") and item_id != rid
    assert {e["item_id"] for e in events[3:9]} == {item_id}
    assert all(e["output_index"] == 0 for e in events[2:10])
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["status"] == "completed"
    assert output_text(events[-1]["response"]) == "delta-0 delta-1 delta-2 delta-3 "

    # The same log, replayed later, is identical.
    replay = stream_frames(client, "GET", f"/responses/{rid}", params={"stream": "true"})
    assert replay[:-1] == events


@pytest.mark.parametrize("background", [True, False])
def test_a_streamed_create_sends_the_stored_log_byte_for_byte(client, background):
    """The request that stores a response sends its response.created without reading it back:
    what it sends is still exactly what the log holds."""
    def data_lines(method: str, url: str, **kwargs) -> list[str]:
        with client.stream(method, url, **kwargs) as r:
            return [line for line in r.iter_lines() if line.startswith("data: ")]

    sent = data_lines("POST", "/responses", json={"input": "hi", "background": background, "stream": True,
                                                  "metadata": {"note": "héllo"}, "custom_inputs": {"deltas": 2}})
    rid = json.loads(sent[0][len("data: "):])["response"]["id"]
    assert data_lines("GET", f"/responses/{rid}", params={"stream": "true"}) == sent


@pytest.mark.parametrize("cursor", [0, 2, 5])
def test_starting_after_returns_strictly_later_events(client, cursor):
    rid = create(client, deltas=5)["id"]
    wait_for_status(client, f"/responses/{rid}", TERMINAL)
    frames = stream_frames(client, "GET", f"/responses/{rid}", params={"stream": "true", "starting_after": cursor})
    numbers = [f["sequence_number"] for f in frames[:-1]]
    # 0 created, 1 in_progress, 2 item added, 3 part added, 4-8 deltas, 9 text done, 10 part done,
    # 11 item done, 12 completed
    assert numbers == list(range(cursor + 1, 13))
    assert frames[-1] == "[DONE]"


def test_tailing_from_the_start_sees_live_events_then_the_end(client):
    rid = create(client, deltas=5, pause=0.1)["id"]
    frames = stream_frames(client, "GET", f"/responses/{rid}", params={"stream": "true"})
    assert [f["sequence_number"] for f in frames[:-1]] == list(range(13))
    assert frames[-2]["type"] == "response.completed"


def test_standard_requests_answer_a_stored_response_object(client):
    body = {"input": [{"role": "user", "content": "hi"}], "custom_inputs": {"deltas": 2}, "metadata": {"k": "v"}}
    answer = client.post("/responses", json=body)
    result = answer.json()
    assert answer.headers["x-response-stored"] == "true"
    assert output_text(result) == "delta-0 delta-1 "
    assert (result["object"], result["status"], result["background"]) == ("response", "completed", False)
    assert result["metadata"]["k"] == "v"
    assert client.get(f"/responses/{result['id']}").json() == result
    frames = stream_frames(client, "POST", "/responses", json={**body, "stream": True})
    assert frames[-1] == "[DONE]"
    types = [f["type"] for f in frames[:-1]]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == 2
    assert frames[0]["response"]["id"] == frames[-2]["response"]["id"]


def test_store_false_answers_without_storing(client):
    body = {"input": [{"role": "user", "content": "hi"}], "custom_inputs": {"deltas": 2}, "store": False}
    answer = client.post("/responses", json=body)
    assert answer.headers["x-response-stored"] == "false"
    result = answer.json()
    assert output_text(result) == "delta-0 delta-1 " and result["status"] == "completed"
    assert client.get(f"/responses/{result['id']}").status_code == 404
    frames = stream_frames(client, "POST", "/responses", json={**body, "stream": True})
    assert [f["sequence_number"] for f in frames[:-1]] == list(range(len(frames) - 1))
    assert frames[-2]["type"] == "response.completed" and frames[-1] == "[DONE]"
    assert client.post("/responses", json={**body, "background": True}).status_code == 400


def test_bare_string_input_is_one_user_message(client):
    rid = client.post("/responses", json={"input": "hi", "background": True}).json()["id"]
    assert wait_for_status(client, f"/responses/{rid}", TERMINAL)["status"] == "completed"


def test_handler_error_fails_the_response(client):
    rid = create(client, deltas=3, fail_after=1)["id"]
    done = wait_for_status(client, f"/responses/{rid}", TERMINAL)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "server_error"
    assert "synthetic failure" in done["error"]["message"]
    frames = stream_frames(client, "GET", f"/responses/{rid}", params={"stream": "true"})
    assert frames[-2]["type"] == "response.failed"
    assert frames[-2]["response"]["error"]["code"] == "server_error"


def test_cancel_stops_a_running_handler_and_is_idempotent(client, tmp_path):
    record = tmp_path / "record.jsonl"
    rid = create(client, deltas=200, pause=0.05, record=str(record))["id"]
    while len(read_records(record)) < 3:
        time.sleep(0.02)
    cancelled_at = time.time()
    first = client.post(f"/responses/{rid}/cancel")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    time.sleep(1.0)
    last_delta = max(r["t"] for r in read_records(record) if r["kind"] == "delta")
    assert last_delta < cancelled_at + 1.0, "the handler kept emitting after cancel"
    emitted = len([r for r in read_records(record) if r["kind"] == "delta"])
    time.sleep(0.5)
    assert len([r for r in read_records(record) if r["kind"] == "delta"]) == emitted

    again = client.post(f"/responses/{rid}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    frames = stream_frames(client, "GET", f"/responses/{rid}", params={"stream": "true"})
    assert frames[-2]["type"] == "response.cancelled"
    assert [f["sequence_number"] for f in frames[:-1]] == list(range(len(frames) - 1))


def test_cancel_after_completion_leaves_it_completed(client):
    rid = create(client, deltas=1)["id"]
    wait_for_status(client, f"/responses/{rid}", TERMINAL)
    assert client.post(f"/responses/{rid}/cancel").json()["status"] == "completed"


def test_delete_removes_the_response_and_its_events(client, sql, shared_schema):
    rid = create(client, deltas=50, pause=0.05)["id"]
    deleted = client.delete(f"/responses/{rid}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": rid, "object": "response.deleted", "deleted": True}
    assert client.get(f"/responses/{rid}").status_code == 404
    assert client.delete(f"/responses/{rid}").status_code == 404
    time.sleep(0.3)  # a handler that had not stopped would write again
    assert sql(f"SELECT count(*) FROM {shared_schema}.events WHERE response_id = %s", (rid,)) == [(0,)]
    assert sql(f"SELECT count(*) FROM {shared_schema}.responses WHERE response_id = %s", (rid,)) == [(0,)]


def test_in_progress_response_shows_output_so_far(client):
    rid = create(client, deltas=40, pause=0.05)["id"]
    body = client.get(f"/responses/{rid}").json()
    assert body["status"] == "in_progress" and body["output"] == []
    client.post(f"/responses/{rid}/cancel")


def test_unknown_id_is_404_with_openai_error(client):
    response = client.get(f"/responses/resp_{'0' * 32}")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "response_not_found" and "resp_" in error["message"]
    assert error["type"] == "not_found_error"


def test_health_reports_the_database(client):
    health = client.get("/health").json()
    assert health["status"] == "healthy"
    assert health["database"] == {"backend": "url", "status": "connected"}
    assert health["background_mode"] is True


def test_handler_sees_request_headers_but_credentials_are_never_stored(client, sql, shared_schema):
    headers = {"X-Forwarded-Access-Token": "secret-token-123", "Authorization": "Bearer abc",
               "X-Forwarded-Email": "headers@example.com", "X-Request-Id": "req-1"}
    rid = create(client, headers=headers, deltas=1, echo_headers=True)["id"]
    done = wait_for_status(client, f"/responses/{rid}", TERMINAL, headers=headers)
    assert "secret-token-123" in output_text(done)  # on-behalf-of calls work in attempt 1
    [(stored, request)] = sql(f"SELECT request_headers::text, request::text FROM {shared_schema}.responses "
                              "WHERE response_id = %s", (rid,))
    assert "x-forwarded-email" in stored and "x-request-id" in stored
    for secret in ("secret-token-123", "Bearer abc"):
        assert secret not in stored and secret not in request
    events = sql(f"SELECT data FROM {shared_schema}.events WHERE response_id = %s", (rid,))
    # The agent chose to echo the token into its own output; the server itself never stores headers there.
    assert all("Bearer abc" not in row[0] for row in events)


def test_identity_isolation(client):
    alice = {"X-Forwarded-Email": "alice@example.com"}
    bob = {"X-Forwarded-Email": "bob@example.com"}
    rid = create(client, headers=alice, deltas=30, pause=0.05)["id"]
    anonymous_rid = create(client, deltas=1)["id"]
    for who in (bob, {}):
        assert client.get(f"/responses/{rid}", headers=who).status_code == 404
        assert client.get(f"/responses/{rid}", params={"stream": "true"}, headers=who).status_code == 404
        assert client.post(f"/responses/{rid}/cancel", headers=who).status_code == 404
        assert client.delete(f"/responses/{rid}", headers=who).status_code == 404
    assert client.get(f"/responses/{anonymous_rid}", headers=alice).status_code == 404
    assert client.get(f"/responses/{anonymous_rid}").status_code == 200
    # Bob's attempts changed nothing: Alice's run goes on and is hers to cancel.
    assert client.get(f"/responses/{rid}", headers=alice).json()["status"] == "in_progress"
    assert client.post(f"/responses/{rid}/cancel", headers=alice).json()["status"] == "cancelled"


def test_trace_id_is_returned_in_metadata(client):
    # Runs started while tracing still warms up are not traced: wait until /health says it is ready.
    deadline = time.monotonic() + 120
    while client.get("/health").json()["tracing"] != "ready":
        assert time.monotonic() < deadline, "tracing never became ready"
        time.sleep(0.1)
    rid = create(client, deltas=1)["id"]
    done = wait_for_status(client, f"/responses/{rid}", TERMINAL)
    assert re.fullmatch(r"tr-[0-9a-f]{32}", done["metadata"]["trace_id"])


def test_starting_after_without_stream_is_rejected(client):
    rid = create(client, deltas=1)["id"]
    response = client.get(f"/responses/{rid}", params={"starting_after": 1})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "starting_after"


def test_previous_response_id_continues_the_committed_conversation(client, tmp_path):
    record = str(tmp_path / "record.jsonl")
    first = client.post("/responses", json={"input": "turn one", "custom_inputs": {"deltas": 1}}).json()
    second = client.post("/responses", json={"input": "turn two", "previous_response_id": first["id"],
                                             "background": True, "custom_inputs": {"deltas": 1}}).json()
    wait_for_status(client, f"/responses/{second['id']}", TERMINAL)
    third = client.post("/responses", json={"input": "turn three", "previous_response_id": second["id"],
                                            "custom_inputs": {"deltas": 1, "record": record}}).json()
    assert third["status"] == "completed", third
    # The handler gets the whole conversation; the response stores only its own input.
    seen = [r["input"] for r in read_records(tmp_path / "record.jsonl") if r["kind"] == "invoke"]
    assert seen == [["turn one", "delta-0 ", "turn two", "delta-0 ", "turn three"]]
    items = client.get(f"/responses/{third['id']}/input_items", params={"order": "asc"}).json()["data"]
    assert [part["text"] for item in items for part in item["content"]] == ["turn three"]


def test_previous_response_id_must_be_a_finished_response_of_yours(client, sql, shared_schema):
    running = create(client, deltas=50, pause=0.2)["id"]
    other = client.post("/responses", json={"input": "x", "custom_inputs": {"deltas": 1}},
                        headers={"X-Forwarded-Email": "someone@example.com"}).json()["id"]
    before = sql(f"SELECT count(*) FROM {shared_schema}.responses")
    for previous, says in ((running, "still in_progress"), (other, "No response"),
                           ("resp_" + "0" * 32, "No response"), ("nope", "not a response id")):
        answer = client.post("/responses", json={"input": "next", "previous_response_id": previous})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == "previous_response_id" and says in answer.json()["error"]["message"]
    assert sql(f"SELECT count(*) FROM {shared_schema}.responses") == before
    client.post(f"/responses/{running}/cancel")
