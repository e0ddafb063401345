"""Odd but legal-looking requests: cursors past the end, retried POSTs with an
Idempotency-Key, duplicated or oversized identity headers, emails in another
letter case. Against the shared synthetic server (real process, real HTTP)."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from agent_server.long_running.http.identity import owner_of
from agent_server.long_running.storage.models import Status
from agent_server.long_running.storage.store import Store
from tests.support import iter_sse, open_database, parse_sse, stream_frames, wait_for_status


def _post(client, body: dict, key: str | None = None, **headers) -> httpx.Response:
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/responses", json=body, headers=headers)


def _count(sql, schema: str, key: str) -> int:
    return sql(f"SELECT count(*) FROM {schema}.responses WHERE idempotency_key = %s", (key,))[0][0]


# ----- starting_after past the end ----------------------------------------------------------


def test_starting_after_past_the_end_of_a_running_response_is_refused(client):
    rid = client.post("/responses", json={"input": "hi", "background": True,
                                          "custom_inputs": {"deltas": 20, "pause": 0.2}}).json()["id"]
    wait_for_status(client, f"/responses/{rid}", {"in_progress"})
    response = client.get(f"/responses/{rid}", params={"stream": "true", "starting_after": 1000})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "starting_after" and "in_progress" in error["message"], error
    # The refusal changed nothing: the run goes on and completes.
    assert wait_for_status(client, f"/responses/{rid}", {"completed"}, timeout=60)["status"] == "completed"


def test_starting_after_the_last_event_of_a_running_response_ends_when_it_does(client):
    rid = client.post("/responses", json={"input": "hi", "background": True,
                                          "custom_inputs": {"deltas": 10, "pause": 0.2}}).json()["id"]
    wait_for_status(client, f"/responses/{rid}", {"in_progress"})
    with client.stream("GET", f"/responses/{rid}", params={"stream": "true"}) as first:
        for frame in iter_sse(first.iter_lines()):
            if isinstance(frame, dict) and frame["type"] == "response.output_text.delta":
                break
    cursor = frame["sequence_number"]
    with client.stream("GET", f"/responses/{rid}", params={"stream": "true", "starting_after": cursor},
                       timeout=60) as rest:
        frames = parse_sse(rest.iter_lines())
    assert frames[-1] == "[DONE]" and frames[-2]["type"] == "response.completed", frames[-3:]
    assert [f["sequence_number"] for f in frames[:-1]] == list(range(cursor + 1, cursor + len(frames)))


# ----- Idempotency-Key -----------------------------------------------------------------


def test_a_retried_background_post_with_the_same_key_returns_the_first_response(client, sql, shared_schema):
    key = f"retry-{uuid.uuid4()}"
    body = {"input": "hi", "background": True, "custom_inputs": {"deltas": 2}}
    first = _post(client, body, key)
    second = _post(client, body, key)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert second.json()["id"] == first.json()["id"]
    assert _count(sql, shared_schema, key) == 1
    # Streamed (stream is how the answer is delivered, not part of the request), the retry
    # replays the first response's log from its start.
    frames = stream_frames(client, "POST", "/responses", json={**body, "stream": True},
                           headers={"Idempotency-Key": key})
    assert frames[0]["response"]["id"] == first.json()["id"]
    assert frames[-1] == "[DONE]"
    assert _count(sql, shared_schema, key) == 1


def test_the_same_key_with_another_body_is_a_409_and_stores_nothing(client, sql, shared_schema):
    key = f"reuse-{uuid.uuid4()}"
    assert _post(client, {"input": "hi", "background": True}, key).status_code == 200
    other = _post(client, {"input": "something else", "background": True}, key)
    assert other.status_code == 409, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.json()["error"]["param"] == "Idempotency-Key"
    assert _count(sql, shared_schema, key) == 1


def test_keys_are_per_identity(client, sql, shared_schema):
    key = f"shared-{uuid.uuid4()}"
    body = {"input": "hi", "background": True}
    alice = _post(client, body, key, **{"X-Forwarded-Email": "alice@example.com"}).json()["id"]
    bob = _post(client, body, key, **{"X-Forwarded-Email": "bob@example.com"}).json()["id"]
    assert alice != bob
    assert _count(sql, shared_schema, key) == 2


def test_concurrent_retries_with_one_key_create_one_response(shared_server, sql, shared_schema):
    key = f"race-{uuid.uuid4()}"
    body = {"input": "hi", "background": True, "custom_inputs": {"deltas": 1}}

    def post(_):
        with httpx.Client(base_url=shared_server.base_url, timeout=60) as c:
            return _post(c, body, key)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert _count(sql, shared_schema, key) == 1


def test_openai_client_retry_with_an_idempotency_key_returns_the_first_response(shared_server):
    client = openai.OpenAI(base_url=shared_server.base_url, api_key="unused")
    key = f"sdk-{uuid.uuid4()}"
    kwargs = {"model": "agent", "input": "hi", "background": True,
              "extra_headers": {"Idempotency-Key": key}, "extra_body": {"custom_inputs": {"deltas": 1}}}
    assert client.responses.create(**kwargs).id == client.responses.create(**kwargs).id


def test_a_malformed_key_is_a_400(client):
    response = _post(client, {"input": "hi", "background": True}, "x" * 300)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_idempotency_key"


# ----- identity headers ----------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-Forwarded-Email", "X-Forwarded-User"])
def test_a_duplicated_identity_header_is_refused(client, sql, shared_schema, header):
    before = sql(f"SELECT count(*) FROM {shared_schema}.responses")[0][0]
    response = client.post("/responses", json={"input": "hi", "background": True},
                           headers=[(header, "victim@example.com"), (header, "attacker@example.com")])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "duplicate_identity_header" and error["param"] == header.lower(), error
    assert sql(f"SELECT count(*) FROM {shared_schema}.responses")[0][0] == before
    # Reads too: a duplicated identity never sees anyone's responses.
    assert client.get("/responses", headers=[(header, "a@example.com"), (header, "b@example.com")]).status_code == 400


def test_emails_compare_case_insensitively(client):
    rid = client.post("/responses", json={"input": "hi", "background": True},
                      headers={"X-Forwarded-Email": "Carol.Case@Example.COM"}).json()["id"]
    again = client.get(f"/responses/{rid}", headers={"X-Forwarded-Email": "carol.case@example.com"})
    assert again.status_code == 200, again.text
    assert client.get(f"/responses/{rid}", headers={"X-Forwarded-Email": "dave@example.com"}).status_code == 404


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-Email": "a" * 2000 + "@example.com"},  # a stored header over its bound
    {"X-Padding": "p" * 100_000},  # all headers together over theirs
])
def test_oversized_headers_are_refused_with_431_and_never_stored(client, sql, shared_schema, headers):
    before = sql(f"SELECT count(*) FROM {shared_schema}.responses")[0][0]
    response = client.post("/responses", json={"input": "hi", "background": True}, headers=headers)
    assert response.status_code == 431, response.text
    assert response.json()["error"]["code"] == "headers_too_large"
    assert sql(f"SELECT count(*) FROM {shared_schema}.responses")[0][0] == before


def test_owners_stored_with_mixed_case_emails_are_found_after_the_migration(pg_url, db_schema, sql):
    async def scenario():
        db = await open_database(pg_url, db_schema)
        try:
            store = Store(db)
            rid = f"resp_{uuid.uuid4().hex}"
            await store.insert_response(response_id=rid, owner="email:Mixed.Case@Example.com",
                                        status=Status.QUEUED, worker_id=None, created_at=0.0,
                                        request={"input": []}, request_headers={}, model="m",
                                        created_event='{"type": "response.created"}')
            # As the version before migration 008 stored it; then the migration runs (again).
            sql(f"DELETE FROM {db_schema}.schema_migrations WHERE version = 8")
            await db.migrate()
            owner = owner_of({"x-forwarded-email": "MIXED.case@example.COM"})
            assert (await store.get_response(rid, owner)) is not None
        finally:
            await db.close()

    asyncio.run(scenario())

