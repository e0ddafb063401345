"""``GET /responses``: the caller's own responses, newest first, paged, over real HTTP
against the shared synthetic-agent server. Each test uses an identity of its
own, so the shared server's other runs are not in its list."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support import wait_for_status

TERMINAL = {"completed", "failed", "cancelled", "incomplete"}


def identity() -> dict[str, str]:
    return {"X-Forwarded-Email": f"lister-{uuid.uuid4().hex[:8]}@example.com"}


def create(client: httpx.Client, headers: dict, text: str = "hello", **custom) -> str:
    body = {"input": text, "background": True, "custom_inputs": {"deltas": 1, **custom}}
    response = client.post("/responses", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def listing(client: httpx.Client, headers: dict, **params) -> dict:
    response = client.get("/responses", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_lists_own_responses_newest_first_in_pages(client):
    me = identity()
    ids = [create(client, me, text=f"question {n}") for n in range(5)]
    for rid in ids:
        wait_for_status(client, f"/responses/{rid}", TERMINAL, headers=me)

    first = listing(client, me, limit=2)
    assert first["object"] == "list" and first["has_more"] is True
    assert [r["id"] for r in first["data"]] == [ids[4], ids[3]]
    assert (first["first_id"], first["last_id"]) == (ids[4], ids[3])
    second = listing(client, me, limit=2, after=first["last_id"])
    assert [r["id"] for r in second["data"]] == [ids[2], ids[1]] and second["has_more"] is True
    last = listing(client, me, limit=2, after=second["last_id"])
    assert [r["id"] for r in last["data"]] == [ids[0]] and last["has_more"] is False
    assert listing(client, me)["data"][-1]["id"] == ids[0]  # default limit covers all five

    item = last["data"][0]
    assert item["object"] == "response" and item["status"] == "completed" and item["attempt_number"] == 1
    assert item["input_preview"] == "question 0"
    assert "output" not in item  # a list entry is a summary; GET /responses/{id} has the output
    assert item["created_at"] <= item["started_at"] + 1 and item["started_at"] <= item["completed_at"]
    assert 0 <= item["duration_seconds"] <= item["completed_at"] - item["started_at"] + 0.01


def test_status_filter_and_running_entries(client):
    me = identity()
    done = create(client, me)
    wait_for_status(client, f"/responses/{done}", TERMINAL, headers=me)
    running = create(client, me, deltas=1, pause=30)
    wait_for_status(client, f"/responses/{running}", {"in_progress"}, headers=me)
    try:
        only_running = listing(client, me, status="in_progress")["data"]
        assert [r["id"] for r in only_running] == [running]
        assert only_running[0]["completed_at"] is None and only_running[0]["duration_seconds"] >= 0
        assert [r["id"] for r in listing(client, me, status="completed")["data"]] == [done]
        assert listing(client, me, status="failed")["data"] == []
    finally:
        client.post(f"/responses/{running}/cancel", headers=me)
    assert [r["id"] for r in listing(client, me, status="cancelled")["data"]] == [running]


def test_other_identities_never_see_the_list(client):
    alice, bob = identity(), identity()
    rid = create(client, alice)
    wait_for_status(client, f"/responses/{rid}", TERMINAL, headers=alice)
    assert [r["id"] for r in listing(client, alice)["data"]] == [rid]
    assert listing(client, bob)["data"] == []
    # A user header equal to the email is another namespace; and another's id is no cursor.
    assert listing(client, {"X-Forwarded-User": alice["X-Forwarded-Email"]})["data"] == []
    response = client.get("/responses", params={"after": rid}, headers=bob)
    assert response.status_code == 400 and response.json()["error"]["param"] == "after"


@pytest.mark.parametrize("params, param", [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "ten"}, "limit"), ({"limit": ""}, "limit"),
    ({"limit": "-1"}, "limit"), ({"status": "done"}, "status"), ({"status": ""}, "status"),
    ({"after": "resp_123"}, "after"), ({"after": "' OR 1=1 --"}, "after"),
    ({"after": "resp_" + "0" * 32}, "after"),  # well formed, but no such response
])
def test_bad_parameters_answer_400(client, params, param):
    response = client.get("/responses", params=params, headers=identity())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["code"] == "invalid_parameter" and error["message"]
