"""Conformance with OpenAI's Responses API, judged by the official ``openai`` client.

One real ``start-server`` per agent variant (offline model, the session's
embedded PostgreSQL). The ``openai`` package's stream helpers must accept what
the server sends, and every raw event of every request pattern — standard
stream, background stream, replay, cursor resume, a crash-resumed attempt —
must parse strictly as OpenAI's ``ResponseStreamEvent`` and follow its event
order (tests/openai_grammar.py).
"""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest
from openai.types.responses import Response

from agent_server.agents import FRAMEWORKS
from agent_server.agents.common.offline.script import Turn, plan_reply
from tests.openai_grammar import Grammar, check_stream, parse_strictly, read_sse
from tests.support import ServerProcess, offline_variant_servers
from bench.synthetic_agent import TEXT_PREFIX

VARIANTS = sorted(FRAMEWORKS)
HELLO = "hello there"
RESEARCH = "Research tide pools for 0.2 seconds"  # one function call, its output, then a message
TOOLS = ["get_current_time", "research", "send_email"]


def offline_answer(text: str) -> str:
    """What the offline model answers to ``text`` when no tool is involved."""
    reply = plan_reply([Turn("user", text)], TOOLS)
    return reply.text


@pytest.fixture(scope="module")
def servers(pg_url, tmp_path_factory) -> dict[str, ServerProcess]:
    """One ``start-server --agent <variant>`` per variant, started side by side."""
    with offline_variant_servers(pg_url, tmp_path_factory, "conf", VARIANTS) as procs:
        yield procs


@pytest.fixture(params=VARIANTS)
def server(request, servers) -> ServerProcess:
    return servers[request.param]


@pytest.fixture
def client(server) -> openai.OpenAI:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", timeout=60, max_retries=0) as c:
        yield c


@pytest.fixture
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        yield c


def stored_count(sql, server) -> int:
    return sql(f"SELECT count(*) FROM {server.schema}.responses")[0][0]


# ----- the stream helpers -------------------------------------------------------

@pytest.mark.parametrize("background", [False, True], ids=["standard", "background"])
def test_stream_helper_final_text_is_the_answer(client, background):
    for text in (HELLO, RESEARCH):
        with client.responses.stream(model="agent", input=text, background=background) as stream:
            events = list(stream)
            final = stream.get_final_response()
        assert events[0].type == "response.created" and events[-1].type == "response.completed"
        assert final.status == "completed" and final.id.startswith("resp_")
        plain = client.responses.create(model="agent", input=text)
        assert final.output_text == plain.output_text
        assert [i.type for i in final.output] == [i.type for i in plain.output]
        if text == HELLO:
            assert final.output_text == offline_answer(HELLO)
        else:
            assert [i.type for i in final.output] == ["function_call", "function_call_output", "message"]
            assert final.output[1].output in final.output_text
        if background:
            assert client.responses.retrieve(final.id).output_text == final.output_text


def test_stream_helper_resumes_a_dropped_background_stream(client):
    first = []
    with client.responses.create(model="agent", input=RESEARCH, background=True, stream=True) as stream:
        for event in stream:
            first.append(event)
            if len(first) == 4:
                break  # the connection drops here
    response_id, last = first[0].response.id, first[-1].sequence_number
    with client.responses.stream(response_id=response_id, starting_after=last) as resumed:
        rest = list(resumed)
        final = resumed.get_final_response()
    numbers = [e.sequence_number for e in first] + [e.sequence_number for e in rest]
    assert numbers == list(range(len(numbers)))
    assert rest[-1].type == "response.completed"
    assert final.output_text == client.responses.create(model="agent", input=RESEARCH).output_text
    assert final.output_text == client.responses.retrieve(response_id).output_text


def test_retrieve_stream_with_a_cursor_sends_exactly_the_rest(client):
    events = list(client.responses.create(model="agent", input=HELLO, background=True, stream=True))
    response_id = events[0].response.id
    for cursor in (0, 3, len(events) - 2, len(events) - 1):
        replay = list(client.responses.retrieve(response_id, stream=True, starting_after=cursor))
        assert [e.sequence_number for e in replay] == list(range(cursor + 1, len(events)))


# ----- every raw event, strictly ------------------------------------------------

def test_every_event_of_every_pattern_is_an_openai_stream_event(http):
    body = {"model": "agent", "input": RESEARCH}
    standard, standard_final = check_stream(read_sse(http, "POST", "/responses", json={**body, "stream": True}))
    assert standard_final["status"] == "completed"

    background, final = check_stream(read_sse(http, "POST", "/responses",
                                              json={**body, "stream": True, "background": True}))
    response_id = final["id"]
    assert [e["type"] for e in background] == [e["type"] for e in standard]
    assert [i["type"] for i in final["output"]] == ["function_call", "function_call_output", "message"]

    replay, _ = check_stream(read_sse(http, "GET", f"/responses/{response_id}", params={"stream": "true"}))
    assert replay == background
    for cursor in (1, 4, len(background) - 2):
        rest = parse_strictly(read_sse(http, "GET", f"/responses/{response_id}",
                                       params={"stream": "true", "starting_after": cursor}))
        assert rest == background[cursor + 1:]
        Grammar().feed_all(background[:cursor + 1] + rest).finish()
    stored = http.get(f"/responses/{response_id}").json()
    assert Response.model_validate(stored, strict=True).status == "completed"
    assert stored["output"] == final["output"]


# ----- the Response object, store, metadata ---------------------------------------

def test_non_stream_create_returns_a_stored_response(client):
    raw = client.responses.with_raw_response.create(model="agent", input=HELLO)
    assert raw.headers.get("x-response-stored") == "true"
    created = raw.parse()
    assert created.id.startswith("resp_") and created.object == "response" and created.status == "completed"
    assert created.created_at > 0 and created.model and created.output_text == offline_answer(HELLO)
    assert created.metadata in ({}, None) or "trace_id" in created.metadata
    retrieved = client.responses.retrieve(created.id)
    assert retrieved.status == "completed" and retrieved.output_text == created.output_text
    assert [i.id for i in retrieved.output] == [i.id for i in created.output]

    raw = client.responses.with_raw_response.create(model="agent", input=HELLO, store=False)
    assert raw.headers.get("x-response-stored") == "false"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(raw.parse().id)


def test_metadata_is_stored_and_echoed_in_every_status_and_event(client, http):
    metadata = {"ticket": "T-1", "k" * 64: "v" * 512}
    created = client.responses.create(model="agent", input=HELLO, metadata=metadata)
    assert created.metadata.items() >= metadata.items()
    assert client.responses.retrieve(created.id).metadata.items() >= metadata.items()

    payloads = read_sse(http, "POST", "/responses", json={
        "model": "agent", "input": HELLO, "background": True, "stream": True, "metadata": metadata})
    events, final = check_stream(payloads)
    with_response = [e for e in events if "response" in e]
    assert len(with_response) >= 3  # created, in_progress, completed
    for event in with_response:
        assert event["response"]["metadata"].items() >= metadata.items(), event["type"]
    assert set(final["metadata"]) - set(metadata) <= {"trace_id"}
    assert client.responses.retrieve(final["id"]).metadata.items() >= metadata.items()


@pytest.mark.parametrize("metadata, named", [
    ({f"key{i}": "v" for i in range(17)}, "metadata"),
    ({"k" * 65: "v"}, "k" * 65),
    ({"count": 1}, "count"),
    ({"long": "v" * 513}, "long"),
], ids=["17-keys", "long-key", "non-string-value", "long-value"])
def test_bad_metadata_is_a_400_and_stores_nothing(client, server, sql, metadata, named):
    before = stored_count(sql, server)
    for background in (False, True):
        with pytest.raises(openai.BadRequestError) as raised:
            client.responses.create(model="agent", input=HELLO, metadata=metadata, background=background)
        error = raised.value.body if isinstance(raised.value.body, dict) else {}
        error = error.get("error", error)
        assert named in (error.get("message", "") + " " + str(error.get("param"))), error
    assert stored_count(sql, server) == before


# ----- input items ----------------------------------------------------------------

def test_input_items_list_in_openai_shape_and_private_to_its_owner(server, client):
    owner = {"X-Forwarded-Email": "owner@example.com"}
    conversation = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "noted"},
                    {"role": "user", "content": HELLO}]
    created = client.responses.create(model="agent", input=conversation, background=True, extra_headers=owner)

    page = client.responses.input_items.list(created.id, extra_headers=owner)
    assert len(page.data) == 3 and page.has_more is False
    assert page.first_id == page.data[0].id and page.last_id == page.data[-1].id
    assert len({item.id for item in page.data}) == 3
    ascending = client.responses.input_items.list(created.id, order="asc", extra_headers=owner).data
    assert [item.role for item in ascending] == ["user", "assistant", "user"]
    assert ascending[0].content[0].text == "first" and ascending[-1].content[0].text == HELLO
    descending = client.responses.input_items.list(created.id, order="desc", extra_headers=owner).data
    assert [item.id for item in descending] == [item.id for item in reversed(ascending)]

    first = client.responses.input_items.list(created.id, order="asc", limit=1, extra_headers=owner)
    assert [item.id for item in first.data] == [ascending[0].id] and first.has_more is True
    after = client.responses.input_items.list(created.id, order="asc", after=ascending[0].id, extra_headers=owner)
    assert [item.id for item in after.data] == [item.id for item in ascending[1:]]
    walked = [item.id for item in client.responses.input_items.list(
        created.id, order="asc", limit=1, extra_headers=owner)]  # auto-pagination follows `after`
    assert walked == [item.id for item in ascending]

    for stranger in ({"X-Forwarded-Email": "stranger@example.com"}, {}):
        with pytest.raises(openai.NotFoundError):
            client.responses.input_items.list(created.id, extra_headers=stranger)

    plain = client.responses.create(model="agent", input=HELLO)
    (only,) = client.responses.input_items.list(plain.id).data
    assert only.role == "user" and only.content[0].text == HELLO


# ----- errors -----------------------------------------------------------------

UNKNOWN_IDS = ["resp_doesnotexist", f"resp_{uuid.uuid4().hex}", "resp_" + "a" * 10_000]


@pytest.mark.parametrize("response_id", UNKNOWN_IDS, ids=["malformed", "well-formed", "10kB"])
def test_an_unknown_id_is_a_404_naming_response_id(client, response_id):
    calls = {
        "retrieve": lambda: client.responses.retrieve(response_id),
        "retrieve-stream": lambda: list(client.responses.retrieve(response_id, stream=True, starting_after=0)),
        "input_items": lambda: client.responses.input_items.list(response_id),
        "cancel": lambda: client.responses.cancel(response_id),
        "delete": lambda: client.responses.delete(response_id),
    }
    for name, call in calls.items():
        with pytest.raises(openai.NotFoundError) as raised:
            call()
        body = raised.value.body if isinstance(raised.value.body, dict) else {}
        error = body.get("error", body)
        assert error.get("param") == "response_id", (name, body)
        assert error.get("message") and error.get("type"), (name, body)


def test_fields_the_agent_ignores_are_accepted(client):
    tool = {"type": "function", "name": "lookup", "description": "Look something up.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}
    cases = [{"temperature": 0.2}, {"max_output_tokens": 64}, {"tools": [tool]},
             {"temperature": 0, "top_p": 0.5, "max_output_tokens": 16, "tools": [tool], "tool_choice": "auto",
              "parallel_tool_calls": False, "instructions": "Be brief.", "user": "someone", "truncation": "auto"}]
    for extra in cases:
        response = client.responses.create(model="agent", input=HELLO, **extra)
        assert response.status == "completed" and response.output_text, extra
        streamed = client.responses.create(model="agent", input=HELLO, background=True, stream=True, **extra)
        assert list(streamed)[-1].type == "response.completed", extra


# ----- a crash-resumed attempt (the scriptable agent: it can be made slow) ------

FAST_RESUME = {"heartbeat_interval_seconds": 1.0, "heartbeat_stale_threshold_seconds": 4.0,
               "stale_scan_interval_seconds": 0.5, "poll_interval_seconds": 0.2}


def test_a_crash_resumed_stream_is_openai_shaped_and_the_client_finishes_it(start_server, db_schema):
    owner = start_server(db_schema, wait=False, **FAST_RESUME)
    survivor = start_server(db_schema, wait=False, **FAST_RESUME)
    for proc in (owner, survivor):
        proc.wait_until_healthy(180, database=True)
    body = {"model": "agent", "input": "go", "background": True, "stream": True,
            # The first attempt stops after 5 deltas until it is killed; the second runs through.
            "custom_inputs": {"deltas": 20, "hold_at": "delta:5", "hold": 120}}
    seen = []
    with httpx.Client(base_url=owner.base_url, timeout=30) as http, \
            http.stream("POST", "/responses", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(line[len("data: "):])
            if len(seen) == 6:  # mid-message: its text deltas are flowing
                break
    owner.kill()  # SIGKILL: the survivor claims the run once its heartbeat is stale
    first = parse_strictly(seen, terminated=False)
    response_id = first[0]["response"]["id"]

    with openai.OpenAI(base_url=survivor.base_url, api_key="unused", timeout=60, max_retries=0) as client:
        # From the start: the helper accumulates both attempts and must accept the result.
        with client.responses.stream(response_id=response_id) as stream:
            helper_events = list(stream)
            final = stream.get_final_response()
        with client.responses.stream(response_id=response_id, starting_after=first[-1]["sequence_number"]) as stream:
            rest = list(stream)
            assert stream.get_final_response().output_text == final.output_text
    assert [e.sequence_number for e in rest] == list(range(len(first), len(helper_events)))
    with httpx.Client(base_url=survivor.base_url, timeout=30) as http:
        events, final_raw = check_stream(read_sse(http, "GET", f"/responses/{response_id}", params={"stream": "true"}))
    assert events[:len(first)] == first
    resumed = [e for e in events if e["type"] == "response.resumed"]
    assert [e["attempt_number"] for e in resumed] == [2]
    after_resume = events[events.index(resumed[0]) + 1:]
    assert any(e["type"] == "response.output_item.done" and e["item"].get("status") == "incomplete"
               for e in after_resume), "the crashed attempt's open message is closed incomplete"
    assert final.status == "completed" and final_raw["status"] == "completed"
    assert final.output_text == "".join(f"{TEXT_PREFIX}{i} " for i in range(20))  # the last attempt, whole
    assert [i["id"] for i in final_raw["output"]] == [i.id for i in final.output]


def test_ignored_fields_are_named_and_wrong_or_unsupported_ones_are_400s(client, server, sql):
    raw = client.responses.with_raw_response.create(
        model="agent", input=HELLO, include=["message.output_text.logprobs"], service_tier="auto")
    assert raw.parse().status == "completed"
    ignored = {name.strip() for name in raw.headers.get("x-ignored-fields", "").split(",")}
    assert {"include", "service_tier"} <= ignored, raw.headers

    before = stored_count(sql, server)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="agent", input=HELLO, extra_body={"temperature": "hot"})
    with pytest.raises(openai.BadRequestError) as raised:  # not a conversation id
        client.responses.create(model="agent", input=HELLO, conversation="conv_1")
    assert raised.value.param == "conversation", raised.value.body
    with pytest.raises(openai.NotFoundError) as raised:  # no such conversation of this caller's
        client.responses.create(model="agent", input=HELLO, conversation=f"conv_{uuid.uuid4().hex}")
    assert raised.value.param == "conversation", raised.value.body
    with pytest.raises(openai.BadRequestError) as raised:  # not a response of this caller's
        client.responses.create(model="agent", input=HELLO, previous_response_id=f"resp_{uuid.uuid4().hex}")
    assert raised.value.param == "previous_response_id", raised.value.body
    assert stored_count(sql, server) == before


def test_previous_response_id_continues_a_finished_response(client):
    first = client.responses.create(model="agent", input="What time is it?")
    second = client.responses.create(model="agent", input="thanks", previous_response_id=first.id)
    assert second.status == "completed" and second.output_text == offline_answer("thanks")
    with client.responses.stream(model="agent", input="and again", previous_response_id=second.id) as stream:
        list(stream)
        assert stream.get_final_response().output_text == offline_answer("and again")
