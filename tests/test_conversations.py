"""Conversations: multi-turn memory stored in Postgres.

Both agent variants (offline model) remember a conversation in every request
pattern, through ``conversation``, chains of ``previous_response_id`` and the
Databricks session ids; a crashed turn joins its conversation only as finally
committed; a message sent while the previous one runs is rejected, queued or
interrupts it; nobody sees or continues another identity's conversation.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid

import httpx
import openai
import pytest

from agent_server.agents import FRAMEWORKS
from agent_server.long_running.conversations.turns import HistoryCache, HistoryRef, Turn
from agent_server.long_running.storage.models import Status
from agent_server.long_running.storage.store import Store
from tests.support import ServerProcess, offline_variant_servers, iter_sse, open_database, read_records, wait_for_status

VARIANTS = sorted(FRAMEWORKS)
TERMINAL = {"completed", "failed", "cancelled", "incomplete"}
NAME = "My name is Ada Lovelace."
ALICE = {"X-Forwarded-Email": "alice@example.com"}
BOB = {"X-Forwarded-Email": "bob@example.com"}
FAST = {"heartbeat_interval_seconds": 1.0, "heartbeat_stale_threshold_seconds": 4.0,
        "stale_scan_interval_seconds": 0.5, "poll_interval_seconds": 0.2}


@pytest.fixture(scope="module")
def variant_servers(pg_url, tmp_path_factory, spawns) -> dict[str, ServerProcess]:
    """One ``start-server --agent <variant>`` per variant (offline model), started side by side."""
    with offline_variant_servers(pg_url, tmp_path_factory, "conv", VARIANTS) as procs:
        yield procs


@pytest.fixture(params=VARIANTS)
def agent(request, variant_servers) -> openai.OpenAI:
    with openai.OpenAI(base_url=variant_servers[request.param].base_url, api_key="unused", timeout=120,
                       max_retries=0) as c:
        yield c


def _background_poll(agent: openai.OpenAI, **kwargs):
    created = agent.responses.create(model="agent", background=True, **kwargs)
    deadline = time.monotonic() + 120
    while (response := agent.responses.retrieve(created.id)).status not in TERMINAL:
        assert time.monotonic() < deadline, response
        time.sleep(0.2)
    return response


def _background_stream(agent: openai.OpenAI, **kwargs):
    with agent.responses.stream(model="agent", background=True, **kwargs) as stream:
        list(stream)
        return stream.get_final_response()


# ----- both variants, the openai client -------------------------------------------------------

def test_a_conversation_remembers_across_the_three_request_patterns(agent):
    conversation = agent.conversations.create()
    first = agent.responses.create(model="agent", input=NAME, conversation=conversation.id)  # standard
    assert first.status == "completed" and "Ada Lovelace" in first.output_text
    second = _background_poll(agent, input="What is my name?", conversation=conversation.id)
    assert second.status == "completed" and second.output_text == "Your name is Ada Lovelace."
    assert second.conversation.id == conversation.id
    third = _background_stream(agent, input="What did I say before?", conversation={"id": conversation.id})
    assert third.output_text == 'Before this, you said: "What is my name?"'

    items = list(agent.conversations.items.list(conversation.id, order="asc"))
    said = [(item.role, item.content[0].text) for item in items]
    assert said == [("user", NAME), ("assistant", first.output_text),
                    ("user", "What is my name?"), ("assistant", second.output_text),
                    ("user", "What did I say before?"), ("assistant", third.output_text)]
    # Each response stores only its own input.
    assert [item.content[0].text for item in agent.responses.input_items.list(third.id)] == ["What did I say before?"]


def test_a_chain_of_previous_response_ids_and_a_branch(agent):
    first = agent.responses.create(model="agent", input=NAME)
    second = _background_poll(agent, input="I like engines.", previous_response_id=first.id)
    third = _background_stream(agent, input="What did I say before?", previous_response_id=second.id)
    assert third.output_text == 'Before this, you said: "I like engines."'
    fourth = agent.responses.create(model="agent", input="What is my name?", previous_response_id=third.id)
    assert fourth.output_text == "Your name is Ada Lovelace."
    # Continuing an earlier response branches: the branch does not see what followed it.
    branch = agent.responses.create(model="agent", input="What did I say before?", previous_response_id=first.id)
    assert branch.output_text == f'Before this, you said: "{NAME}"'
    # ... and the original line goes on unchanged.
    fifth = agent.responses.create(model="agent", input="What did I say before?", previous_response_id=fourth.id)
    assert fifth.output_text == 'Before this, you said: "What is my name?"'


@pytest.mark.parametrize("where", ["session_id", "thread_id", "conversation_id"])
def test_databricks_session_ids_are_the_same_stored_conversation(agent, where):
    key = f"session-{uuid.uuid4().hex[:8]}"
    body = ({"context": {"conversation_id": key}} if where == "conversation_id"
            else {"custom_inputs": {where: key}})
    first = agent.responses.create(model="agent", input=NAME, extra_body=body, extra_headers=ALICE)
    assert first.status == "completed"
    again = agent.responses.create(model="agent", input="What is my name?", extra_body=body, extra_headers=ALICE)
    assert again.output_text == "Your name is Ada Lovelace."
    # The same session id from another identity is another conversation.
    stranger = agent.responses.create(model="agent", input="What is my name?", extra_body=body, extra_headers=BOB)
    assert stranger.output_text == "You have not told me your name in this conversation."


# ----- the synthetic agent: what the handler is given --------------------------------------------

def _invocations(record) -> list[dict]:
    return [r for r in read_records(record) if r["kind"] == "invoke"] if record.exists() else []


def _text(response: dict) -> str:
    return "".join(part["text"] for item in response["output"] for part in item.get("content", []))


def test_turn_three_sees_turn_one_and_the_final_turn_two_after_its_owner_was_killed(
        start_server, db_schema, tmp_path, sql):
    owner = start_server(db_schema, **FAST)
    survivor = start_server(db_schema, **FAST)
    record, turn_two_record = tmp_path / "record.jsonl", tmp_path / "turn-two.jsonl"
    with httpx.Client(base_url=owner.base_url, timeout=60) as client:
        conversation = client.post("/conversations", json={}).json()["id"]
        first = client.post("/responses", json={"input": "turn one", "conversation": conversation,
                                                "custom_inputs": {"deltas": 2}}).json()
        body = {"input": "turn two", "conversation": conversation, "background": True, "stream": True,
                "custom_inputs": {"deltas": 30, "pause": 0.1, "record": str(turn_two_record)}}
        seen = []
        with client.stream("POST", "/responses", json=body) as response:
            for frame in iter_sse(response.iter_lines()):
                seen.append(frame)
                if frame.get("type") == "response.output_text.delta" and frame["delta"] == "delta-5 ":
                    break
    second = seen[0]["response"]["id"]
    owner.kill()  # SIGKILL mid-turn: its partial output must never join the conversation
    with httpx.Client(base_url=survivor.base_url, timeout=60) as client:
        final_second = wait_for_status(client, f"/responses/{second}", TERMINAL, timeout=90)
        assert final_second["status"] == "completed" and final_second["attempt_number"] == 2
        third = client.post("/responses", json={"input": "turn three", "conversation": conversation,
                                                "custom_inputs": {"deltas": 1, "record": str(record)}}).json()
        assert third["status"] == "completed", third
        items = client.get(f"/conversations/{conversation}/items", params={"order": "asc"}).json()["data"]
    # Both attempts of turn two saw the same history: turn one (the resumed one, a recovery message after).
    killed, resumed = _invocations(turn_two_record)
    assert killed["input"] == ["turn one", _text(first), "turn two"]
    assert resumed["input"][:3] == killed["input"] and resumed["recovery"] and len(resumed["input"]) == 4
    [invocation] = _invocations(record)
    assert invocation["input"] == ["turn one", _text(first), "turn two", _text(final_second), "turn three"]
    assert _text(final_second) == "".join(f"delta-{i} " for i in range(30))
    assert [part["text"] for item in items for part in item["content"]] == invocation["input"] + [_text(third)]
    # Every item was added by a final write: one per response, nothing from the killed attempt.
    rows = sql(f"SELECT response_id, count(*) FROM {db_schema}.conversation_items WHERE conversation_id = %s "
               "GROUP BY response_id ORDER BY min(position)", (conversation,))
    assert rows == [(first["id"], 2), (second, 2), (third["id"], 2)]


def _post_together(base_url: str, bodies: list[dict]) -> list[httpx.Response]:
    """POST the bodies at once (one thread each), so they race to the server's workers."""
    answers: list[httpx.Response | None] = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def post(i: int) -> None:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            barrier.wait()
            answers[i] = client.post("/responses", json=bodies[i])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return answers


def test_double_texting_reject_enqueue_and_interrupt_on_two_workers(start_server, db_schema, tmp_path, sql):
    server = start_server(db_schema, workers=2, **FAST)
    client = httpx.Client(base_url=server.base_url, timeout=120)

    def turn(conversation: str, text: str, record, **extra) -> dict:
        return {"input": text, "conversation": conversation, "background": True,
                "custom_inputs": {"deltas": 10, "pause": 0.3, "record": str(record), "tag": text}, **extra}

    # enqueue (the default): both are stored; the later one starts when the earlier ends and sees its output.
    record = tmp_path / "enqueue.jsonl"
    conversation = client.post("/conversations", json={}).json()["id"]
    answers = _post_together(server.base_url, [turn(conversation, "one", record), turn(conversation, "two", record)])
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert sorted(a.json()["status"] for a in answers) == ["in_progress", "queued"]
    finals = {a.json()["id"]: wait_for_status(client, f"/responses/{a.json()['id']}", TERMINAL, timeout=120)
              for a in answers}
    assert {f["status"] for f in finals.values()} == {"completed"}
    earlier, later = sorted(_invocations(record), key=lambda r: r["t"])
    exits = {r["tag"]: r["t"] for r in read_records(record) if r["kind"] == "exit"}
    assert later["t"] >= exits[earlier["tag"]]  # never both at once
    earlier_text = "".join(f"delta-{i} " for i in range(10))
    assert later["input"] == [earlier["tag"], earlier_text, later["tag"]]

    # reject: the second gets 409 naming the running response, and nothing is stored for it.
    record = tmp_path / "reject.jsonl"
    conversation = client.post("/conversations", json={}).json()["id"]
    running = client.post("/responses", json=turn(conversation, "first", record)).json()
    before = sql(f"SELECT count(*) FROM {db_schema}.responses")
    answers = _post_together(server.base_url, [turn(conversation, f"again {i}", record, multitask_strategy="reject")
                                                for i in range(2)])
    for answer in answers:
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert running["id"] in error["message"] and error["param"] == "multitask_strategy"
    assert sql(f"SELECT count(*) FROM {db_schema}.responses") == before
    client.post(f"/responses/{running['id']}/cancel")

    # interrupt: the running one is cancelled, then the new one runs with what it committed (its input).
    record = tmp_path / "interrupt.jsonl"
    conversation = client.post("/conversations", json={}).json()["id"]
    running = client.post("/responses", json=turn(conversation, "long", record)).json()
    deadline = time.monotonic() + 60
    while not _invocations(record):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    newer = client.post("/responses", json=turn(conversation, "instead", record,
                                                 multitask_strategy="interrupt")).json()
    assert wait_for_status(client, f"/responses/{running['id']}", TERMINAL)["status"] == "cancelled"
    assert wait_for_status(client, f"/responses/{newer['id']}", TERMINAL, timeout=120)["status"] == "completed"
    last = [r for r in _invocations(record) if r["tag"] == "instead"]
    assert last[0]["input"] == ["long", "instead"]
    client.close()


# ----- identities and bad ids (the shared synthetic server) ------------------------------------

def test_conversations_api_with_the_openai_client(shared_server):
    with openai.OpenAI(base_url=shared_server.base_url, api_key="unused", max_retries=0,
                       default_headers=ALICE) as client:
        created = client.conversations.create(items=[{"role": "user", "content": f"hello {i}"} for i in range(3)],
                                              metadata={"topic": "greetings"})
        assert created.object == "conversation" and created.id.startswith("conv_")
        assert client.conversations.retrieve(created.id).metadata == {"topic": "greetings"}
        assert client.conversations.update(created.id, metadata={"topic": "other"}).metadata == {"topic": "other"}
        page = client.conversations.items.list(created.id, limit=2, order="asc")
        assert [item.content[0].text for item in page.data] == ["hello 0", "hello 1"] and page.has_more
        everything = [item.content[0].text for item in client.conversations.items.list(created.id, limit=2)]
        assert everything == ["hello 2", "hello 1", "hello 0"]  # newest first, across pages
        reply = client.responses.create(model="agent", input="and you?", conversation=created.id,
                                        extra_body={"custom_inputs": {"deltas": 1}})
        assert reply.status == "completed"
        assert len(list(client.conversations.items.list(created.id))) == 5
        deleted = client.conversations.delete(created.id)
        assert deleted.deleted and deleted.id == created.id
        with pytest.raises(openai.NotFoundError):
            client.conversations.retrieve(created.id)


def test_another_identity_neither_sees_nor_continues_a_conversation(client, sql, shared_schema):
    conversation = client.post("/conversations", json={}, headers=ALICE).json()["id"]
    mine = client.post("/responses", json={"input": "secret", "conversation": conversation,
                                           "custom_inputs": {"deltas": 1}}, headers=ALICE).json()
    assert mine["status"] == "completed"
    for method, path in (("GET", ""), ("GET", "/items"), ("DELETE", ""), ("POST", "")):
        answer = client.request(method, f"/conversations/{conversation}{path}", headers=BOB,
                                **({"json": {"metadata": {}}} if method == "POST" else {}))
        assert answer.status_code == 404, (method, path, answer.text)
    before = sql(f"SELECT count(*) FROM {shared_schema}.responses")
    answer = client.post("/responses", json={"input": "x", "conversation": conversation}, headers=BOB)
    assert answer.status_code == 404 and answer.json()["error"]["param"] == "conversation"
    answer = client.post("/responses", json={"input": "x", "previous_response_id": mine["id"]}, headers=BOB)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "previous_response_id"
    assert sql(f"SELECT count(*) FROM {shared_schema}.responses") == before
    assert client.get(f"/conversations/{conversation}", headers=ALICE).status_code == 200


@pytest.mark.parametrize("body, status, param", [
    ({"conversation": "conv_nope"}, 400, "conversation"),
    ({"conversation": {"id": 7}}, 400, "conversation"),
    ({"conversation": "conv_" + "0" * 32}, 404, "conversation"),
    ({"conversation": "conv_" + "0" * 32, "previous_response_id": "resp_" + "0" * 32}, 400, "previous_response_id"),
    ({"previous_response_id": "resp_" + "0" * 32}, 400, "previous_response_id"),
    ({"custom_inputs": {"session_id": "s"}, "multitask_strategy": "later"}, 400, "multitask_strategy"),
    ({"custom_inputs": {"session_id": "s" * 600}}, 400, "custom_inputs"),
])
def test_bad_conversation_fields_are_refused_and_store_nothing(client, sql, shared_schema, body, status, param):
    before = sql(f"SELECT (SELECT count(*) FROM {shared_schema}.responses), "
                 f"(SELECT count(*) FROM {shared_schema}.conversations)")
    for background in (False, True):
        answer = client.post("/responses", json={"input": "x", "background": background, **body})
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert error["param"] == param and error["message"], error
    assert sql(f"SELECT (SELECT count(*) FROM {shared_schema}.responses), "
               f"(SELECT count(*) FROM {shared_schema}.conversations)") == before


def test_bad_conversation_ids_on_the_endpoints(client):
    for path in ("/conversations/nope", "/conversations/conv_" + "0" * 32, "/conversations/conv_" + "0" * 32 + "/items"):
        answer = client.get(path)
        assert answer.status_code == 404 and "not found" in answer.json()["error"]["message"], answer.text
    conversation = client.post("/conversations", json={}).json()["id"]
    for params, param in (({"limit": "0"}, "limit"), ({"order": "sideways"}, "order"), ({"after": "item_x"}, "after")):
        answer = client.get(f"/conversations/{conversation}/items", params=params)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, answer.text
    answer = client.post("/conversations", json={"items": "hello"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "items"


def test_retention_forgets_idle_conversations_but_not_one_with_a_turn_running(pg_url, db_schema, sql):
    idle, busy = "conv_" + "a" * 32, "conv_" + "b" * 32

    async def main():
        db = await open_database(pg_url, db_schema)
        store = Store(db)
        for conversation_id in (idle, busy):
            await store.create_conversation(conversation_id, "", items=[{"role": "user", "content": "hi"}])
        status, history_end = await store.insert_turn(
            conversation_id=busy, decide=functools.partial(Turn(busy, "enqueue").status_for, start_here=True),
            created_event=lambda _status: "{}",
            response_id="resp_" + "c" * 32, owner="", worker_id="w", created_at=time.time(),
            request={"input": []}, request_headers={}, model="m")
        assert (status, history_end) == (Status.IN_PROGRESS, 1)
        sql(f"UPDATE {db_schema}.conversations SET updated_at = now() - interval '2 hours'")
        await store.delete_expired_conversations(3600)
        await db.close()

    asyncio.run(main())
    assert sql(f"SELECT conversation_id FROM {db_schema}.conversations") == [(busy,)]
    assert sql(f"SELECT count(*) FROM {db_schema}.conversation_items WHERE conversation_id = %s", (idle,)) == [(0,)]


def test_instructions_stay_with_their_turn_and_an_unstored_turn_joins_nothing(client, tmp_path):
    record = tmp_path / "record.jsonl"
    conversation = client.post("/conversations", json={}).json()["id"]
    turn = {"conversation": conversation, "custom_inputs": {"deltas": 1, "record": str(record)}}
    assert client.post("/responses", json={"input": "one", "instructions": "be brief", **turn}).status_code == 200
    unstored = client.post("/responses", json={"input": "aside", "store": False, **turn})
    assert unstored.status_code == 200 and unstored.headers["x-response-stored"] == "false"
    assert client.post("/responses", json={"input": "two", **turn}).status_code == 200
    first, aside, second = (r["input"] for r in _invocations(record))
    assert first == ["be brief", "one"]
    assert aside == ["one", "delta-0 ", "aside"]  # reads the conversation ...
    assert second == ["one", "delta-0 ", "two"]  # ... but joins nothing; the instructions did not join either


def test_a_worker_reads_and_parses_only_the_items_it_has_not_seen(pg_url, db_schema):
    conversation_id = "conv_" + "d" * 32
    reads = []

    async def main():
        db = await open_database(pg_url, db_schema)
        store = Store(db)
        await store.create_conversation(conversation_id, "", items=[{"role": "user", "content": f"m{i}"}
                                                                    for i in range(5)])
        real_read = store.conversation_history

        async def recorded_read(cid, start, end):
            reads.append((start, end))
            return await real_read(cid, start, end)

        store.conversation_history = recorded_read
        cache = HistoryCache(store, max_items=4)
        first = await cache.items(HistoryRef(conversation_id, 2))
        again = await cache.items(HistoryRef(conversation_id, 3))
        first[0].content = "changed by a handler"  # a copy: the cache keeps the stored item
        shorter = await cache.items(HistoryRef(conversation_id, 1))
        everything = await cache.items(HistoryRef(conversation_id, 5))  # over max_items: not kept
        after = await cache.items(HistoryRef(conversation_id, 5))
        await db.close()
        return first, again, shorter, everything, after

    first, again, shorter, everything, after = asyncio.run(main())
    assert [item.content for item in again] == ["m0", "m1", "m2"]
    assert [item.content for item in shorter] == ["m0"]
    assert [item.content for item in everything] == [item.content for item in after] == [f"m{i}" for i in range(5)]
    assert reads == [(0, 2), (2, 3), (3, 5), (0, 5)]


def test_an_overlong_conversation_is_refused_and_nothing_is_stored(client, sql, shared_schema):
    conversation = client.post("/conversations", json={}).json()["id"]
    previous = client.post("/responses", json={"input": "x", "conversation": conversation,
                                               "custom_inputs": {"deltas": 1}}).json()
    sql(f"UPDATE {shared_schema}.conversations SET item_count = 10000 WHERE conversation_id = %s", (conversation,))
    before = sql(f"SELECT count(*) FROM {shared_schema}.responses")
    for body, param in (({"conversation": conversation}, "conversation"),
                        ({"previous_response_id": previous["id"]}, "previous_response_id")):
        answer = client.post("/responses", json={"input": "more", "background": True, **body})
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "conversation_too_long" and error["param"] == param and "10000" in error["message"]
    assert sql(f"SELECT count(*) FROM {shared_schema}.responses") == before
