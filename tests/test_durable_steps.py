"""A resumed run continues at the step it was on, in both variants.

First the journal of model calls, the filter of logged items and the
checkpoint retention against the real embedded PostgreSQL; then real
``start-server`` processes of both variants calling a scripted, counting
serving endpoint on 127.0.0.1 through the real Databricks clients
(``harness/scripted_endpoint.py``): a run of three model calls and two tools
is SIGKILLed while its second tool runs and resumed by a restarted server,
then by a second live worker (``bench/durable_steps.py``'s rig).
"""

from __future__ import annotations

import json
import uuid

import pytest

from agent_server.agents import FRAMEWORKS
from agent_server.long_running.journal.logged_items import LoggedItems, completed_items, same_item
from agent_server.long_running.journal.model_calls import ModelCallJournal
from agent_server.long_running.journal.steps import handler_resumes_at_step, resumes_at_step
from agent_server.long_running.storage.models import RecordedToolCall
from agent_server.long_running.storage.store import Store
from agent_server.long_running.tools.tool_calls import AttemptToolCalls, attempt_tool_calls
from bench.durable_steps import StepsRig, planned_reply, topic
from harness.scripted_endpoint import ScriptedEndpoint
from tests.support import insert_response, new_response_id, run_async, store_with_response

VARIANTS = sorted(FRAMEWORKS)


# ----- the journal of model calls, in Postgres -------------------------------------------

def test_the_journal_replays_in_order_while_inputs_match_then_records_again(pg_url, db_schema, caplog):
    async def attempt(store: Store, rid: str, number: int, digests: list[str], max_bytes: int = 1 << 20):
        journal = ModelCallJournal(rid, number, await store.recorded_model_calls(rid),
                                   lambda position, digest, result: store.record_model_call(
                                       rid, number, position, digest, result), max_bytes)
        replays = []
        for digest in digests:
            step = journal.next_call(digest)
            replays.append(step.replay)
            if step.replay is None:
                await journal.record(step, json.dumps({"made by": number, "input": digest}))
        return replays, journal

    async def scenario():
        async with store_with_response(pg_url, db_schema) as (store, rid):
            first, _ = await attempt(store, rid, 1, ["a", "b", "c"])
            # Attempt 2: the first call matches, the second's input differs (the agent changed):
            # live from there, and attempt 1's later record (a branch no longer taken) goes.
            second, journal2 = await attempt(store, rid, 2, ["a", "B"])
            after_second = [(c.position, c.attempt_number, c.input_digest)
                            for c in await store.recorded_model_calls(rid)]
            third, journal3 = await attempt(store, rid, 3, ["a", "B", "c"])
            # A record of an older attempt never replaces a newer one's.
            await store.record_model_call(rid, 1, 1, "old", "{}")
            kept = (await store.recorded_model_calls(rid))[1]
            # Past the bound nothing more is recorded: a later resume goes live from there.
            bounded_rid = new_response_id()
            await insert_response(store, bounded_rid)
            size = len(json.dumps({"made by": 1, "input": "x"}))
            await attempt(store, bounded_rid, 1, ["x", "y", "z"], max_bytes=2 * size)
            bounded = [c.input_digest for c in await store.recorded_model_calls(bounded_rid)]
            # The journal goes with its response.
            await store.delete_response(rid, "")
            gone = await store.recorded_model_calls(rid)
            return first, second, after_second, third, journal2, journal3, kept, bounded, gone

    caplog.set_level("INFO", logger="agent_server")
    first, second, after_second, third, journal2, journal3, kept, bounded, gone = run_async(scenario())
    assert first == [None, None, None]
    assert json.loads(second[0]) == {"made by": 1, "input": "a"} and second[1] is None
    assert (journal2.replayed, journal2.recorded) == (1, 1)
    assert after_second == [(0, 1, "a"), (1, 2, "B")]
    assert [json.loads(r)["made by"] for r in third[:2]] == [1, 2] and third[2] is None
    assert (journal3.replayed, journal3.recorded) == (2, 1)
    assert (kept.attempt_number, kept.input_digest) == (2, "B")
    assert bounded == ["x", "y"]
    assert gone == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("model call 1's input differs from the one attempt 1 recorded" in m for m in messages)
    assert any("reached journal_max_bytes" in m and "model call 2" in m for m in messages)


# ----- the items a resumed handler repeats -------------------------------------------------

FC = {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "research", "arguments": "{}",
      "status": "completed"}
FCO = {"type": "function_call_output", "id": "fco_1", "call_id": "call_a", "output": "notes", "status": "completed"}
MSG = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
       "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}


def done(item: dict) -> dict:
    return {"type": "response.output_item.done", "item": item}


def test_logged_items_are_dropped_in_order_until_something_new_comes():
    logged = LoggedItems([FC, FCO, MSG])
    # The same items again, with the ids a new attempt gives them.
    assert logged.repeats(done({**FC, "id": "__fake_id__"}))
    assert logged.repeats(done({**FCO, "id": None, "output": "notes"}))
    # A live answer's first token ends the matching: the message and all after it are stored.
    assert not logged.repeats({"type": "response.output_text.delta", "item_id": "x", "delta": "Done."})
    assert not logged.repeats(done(MSG))
    assert logged.dropped == 2
    # An item the log does not have ends it too.
    other = LoggedItems([FC, FCO])
    assert not other.repeats(done({**FC, "call_id": "call_b"}))
    assert not other.repeats(done(FCO))


def test_items_are_the_same_by_call_id_or_text():
    assert same_item(FCO, {**FCO, "output": "a newer reading"})  # an always-run tool's second output
    assert not same_item(FC, FCO)
    assert same_item(MSG, {"type": "message", "role": "assistant",
                           "content": [{"type": "output_text", "text": "Done."}]})
    assert not same_item(MSG, {**MSG, "content": [{"type": "output_text", "text": "Other."}]})


def test_completed_items_leave_out_what_a_dead_attempt_left_open():
    events = [json.dumps(e) for e in (
        {"type": "response.created"}, done(FC), done(FCO),
        done({**MSG, "status": "incomplete"}),  # closed by the seam: it was streaming when the owner died
    )]
    assert completed_items(events) == [FC, FCO]


def test_a_handler_is_marked_under_or_over_the_stream_decorator():
    import functools

    async def plain(request):
        yield {}

    marked = resumes_at_step(lambda request: None)

    @functools.wraps(marked)
    def wrapper(request):
        return marked(request)

    assert not handler_resumes_at_step(plain)
    assert handler_resumes_at_step(marked) and handler_resumes_at_step(wrapper)


def test_both_variants_register_a_handler_that_resumes_at_the_step(agent):
    from mlflow.genai.agent_server import get_stream_function

    assert get_stream_function() is not None and handler_resumes_at_step(get_stream_function())


def test_checkpoints_of_ended_responses_are_deleted(pg_url, db_schema, sql):
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def scenario():
        async with store_with_response(pg_url, db_schema) as (store, running):
            await store.delete_ended_checkpoints()  # no checkpoint tables yet: nothing to do, no error
            pool = store.db.pool
            await store.set_up_once("langgraph-checkpointer", AsyncPostgresSaver(pool).setup)
            ended = new_response_id()
            await insert_response(store, ended)
            rows = {"checkpoints": "(thread_id, checkpoint_id, checkpoint) VALUES (%s, '1', '{}')",
                    "checkpoint_blobs": "(thread_id, channel, version, type) VALUES (%s, 'c', '1', 't')",
                    "checkpoint_writes": "(thread_id, checkpoint_id, task_id, idx, channel, blob) "
                                         "VALUES (%s, '1', 't', 0, 'c', '')"}
            async with pool.connection() as conn:
                for rid in (running, ended):
                    for table, row in rows.items():
                        await conn.execute(f"INSERT INTO {db_schema}.{table} {row}", (rid,))
                await conn.execute(f"UPDATE {db_schema}.responses SET status = 'completed' WHERE response_id = %s",
                                   (ended,))
            await store.delete_ended_checkpoints()
            return running, ended

    running, ended = run_async(scenario())
    for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
        assert sql(f"SELECT thread_id FROM {db_schema}.{table}") == [(running,)], table


# ----- every tool is recorded, however it was declared ----------------------------------------

def _recording(prior=()):
    """An attempt's tool calls whose new records are collected in a list."""
    recorded: list = []

    async def record(call):
        recorded.append(call)

    return AttemptToolCalls("resp_x", 2 if prior else 1, list(prior), record), recorded


def test_a_function_tool_declared_the_sdk_way_is_recorded_and_served():
    from agents import function_tool
    from agents.tool_context import ToolContext

    from agent_server.agents import always_run
    from agent_server.agents.openai_adapter.tools import recorded_function_tool

    runs = []

    @function_tool
    def lookup(query: str) -> str:
        """Look something up."""
        runs.append(query)
        return f"found {query}"

    async def call(tool, prior=()):
        calls, recorded = _recording(prior)
        context = ToolContext(context=None, tool_name=tool.name, tool_call_id="call_1",
                              tool_arguments='{"query": "kelp"}')
        with attempt_tool_calls(calls):
            output = await recorded_function_tool(tool).on_invoke_tool(context, '{"query": "kelp"}')
        return output, recorded

    output, (first,) = run_async(call(lookup))
    assert output == "found kelp" and (first.name, first.arguments, first.call_id) == (
        "lookup", {"query": "kelp"}, "call_1")
    served, again = run_async(call(lookup, [RecordedToolCall(first.key, "lookup", first.arguments, "RECORDED", "c", 1)]))
    assert served == "RECORDED" and again == [] and runs == ["kelp"]
    # Marked always_run, it runs again under the same key.
    rerun, (record,) = run_async(call(always_run(lookup), [first]))
    assert rerun == "found kelp" and runs == ["kelp", "kelp"] and record.key == first.key


def test_a_langchain_tool_is_recorded_and_served_by_the_durable_tool_node():
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph

    from agent_server.agents.langgraph_adapter.tools import durable_tool_node

    runs = []

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        runs.append(query)
        return f"found {query}"

    graph = StateGraph(MessagesState)
    graph.add_node("tools", durable_tool_node([lookup]))
    graph.add_edge(START, "tools")
    graph = graph.compile()
    state = {"messages": [AIMessage("", tool_calls=[{"id": "call_1", "name": "lookup", "args": {"query": "reef"}}])]}

    async def call(prior=()):
        calls, recorded = _recording(prior)
        with attempt_tool_calls(calls):
            result = await graph.ainvoke(state)
        return result["messages"][-1], recorded

    message, (first,) = run_async(call())
    assert message.content == "found reef" and (first.name, first.call_id) == ("lookup", "call_1")
    served, again = run_async(call([RecordedToolCall(first.key, "lookup", first.arguments, "RECORDED", "c", 1)]))
    assert (served.content, served.tool_call_id) == ("RECORDED", "call_1") and again == [] and runs == ["reef"]


@pytest.fixture
def calc_mcp(mcp_server, monkeypatch):
    """The variant imported next (``agent``) uses the test MCP server's ``add`` tool."""
    monkeypatch.setenv("MCP_SERVERS", f"calc=http://127.0.0.1:{mcp_server.port}/calc/mcp")
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "")
    monkeypatch.setenv("DATABRICKS_HOST", "")


def test_mcp_tool_calls_are_recorded_and_served_in_both_variants(calc_mcp, agent):
    from mlflow.types.responses import ResponsesAgentRequest

    request = ResponsesAgentRequest(input=[{"role": "user", "content": 'Use the add tool with {"a": 2, "b": 3}'}])

    async def attempt(prior=()):
        calls, recorded = _recording(prior)
        with attempt_tool_calls(calls):
            items = [e["item"] async for e in agent.stream_handler(request)
                     if e["type"] == "response.output_item.done"]
        return items, recorded

    (call, output, _answer), (first,) = run_async(attempt())
    assert (first.name, first.arguments, first.call_id) == ("add", {"a": 2, "b": 3}, call["call_id"])
    assert "5" in output["output"] and "5" in json.dumps(first.output)
    # A resumed attempt is served the record: the MCP server is not called (it would say 5).
    prior = [RecordedToolCall(first.key, "add", first.arguments, "RECORDED 42", "call_old", 1)]
    (_call, output, answer), again = run_async(attempt(prior))
    assert "RECORDED 42" in output["output"] and "RECORDED 42" in answer["content"][0]["text"] and again == []


# ----- real servers of both variants, killed while the second tool runs ------------------------

STEPS = 3  # three model calls, two tools


@pytest.fixture(scope="module")
def endpoint():
    with ScriptedEndpoint(planned_reply) as scripted:
        yield scripted


@pytest.fixture(scope="module", params=VARIANTS)
def rig(request, endpoint, pg_url, tmp_path_factory, spawns):
    steps_rig = StepsRig(request.param, pg_url, tmp_path_factory.mktemp(f"steps-{request.param}"), endpoint)
    steps_rig.first = steps_rig.start()
    yield steps_rig
    steps_rig.close()


def stream_items(events: list[dict]) -> list[dict]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"
            and e["item"].get("status") != "incomplete"]


def item_key(item: dict) -> tuple:
    return (item["type"], item.get("call_id") or "".join(p.get("text", "") for p in item.get("content") or []))


def check_resumed_at_the_step(rig: StepsRig, server, tag: str, rid: str) -> None:
    final = rig.finished(server, rid)
    assert final["status"] == "completed" and final["attempt_number"] == 2, final
    # The endpoint saw what a run without a crash makes: no model call the dead attempt finished again.
    calls = rig.endpoint.chat_requests(containing=tag)
    assert len(calls) == STEPS, [c["body"]["messages"][-1] for c in calls]
    assert not any("[RECOVERY]" in json.dumps(c["body"]["messages"]) for c in calls)
    # The first tool ran once; the second, unfinished when the owner died, ran again under the same key.
    assert len(rig.research_keys(topic(tag, 1))) == 1
    second = rig.research_keys(topic(tag, 2))
    assert len(second) == 2 and second[0] == second[1] and second[0].startswith(f"{rid}:research:")
    # A client reading from the start sees every item once, and the answer's text once.
    events = rig.events(server, rid)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    items = stream_items(events)
    assert [i["type"] for i in items] == ["function_call", "function_call_output"] * 2 + ["message"], items
    assert len({item_key(i) for i in items}) == len(items)
    answer = items[-1]["content"][0]["text"]
    assert answer == f"All 2 studies of {tag} are done; each one finished in order."
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == answer
    # The Response's output is the same one answer.
    assert [item_key(i) for i in final["output"]] == [item_key(i) for i in items]
    assert json.loads(items[0]["arguments"])["topic"] == topic(tag, 1)


def test_a_run_without_a_crash_makes_three_model_calls(rig):
    tag = f"t{uuid.uuid4().hex[:8]}"
    rid = rig.post(rig.first, f"Research {tag} in {STEPS} steps")
    final = rig.finished(rig.first, rid)
    assert final["status"] == "completed" and final["attempt_number"] == 1, final
    assert len(rig.endpoint.chat_requests(containing=tag)) == STEPS
    assert [item["type"] for item in final["output"]] == ["function_call", "function_call_output"] * 2 + ["message"]


def test_a_restarted_server_resumes_at_the_step(rig):
    killed = rig.killed_during_the_last_step(rig.first, STEPS)
    assert len(rig.endpoint.chat_requests(containing=killed["tag"])) == STEPS - 1
    rig.restarted = rig.start()  # the only server: it takes the dead owner's run as it starts
    check_resumed_at_the_step(rig, rig.restarted, killed["tag"], killed["response_id"])


def test_a_second_live_worker_takes_over_at_the_step(rig):
    owner = rig.start()
    killed = rig.killed_during_the_last_step(owner, STEPS)
    check_resumed_at_the_step(rig, rig.restarted, killed["tag"], killed["response_id"])
