"""A finished tool call is never run again; an unfinished one may be.

First the recording module and ``@durable_tool`` against the real embedded
PostgreSQL, then both agent variants' handlers in this process, then real
``start-server`` processes of both variants whose owner is SIGKILLed at
chosen points of a run (another server process resumes it), through the
harness the ``tool_calls`` bench figure uses (``bench/tool_calls.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid

import pytest
from langchain_core.messages import convert_to_messages
from mlflow.types.responses import ResponsesAgentRequest

from agent_server.agents import FRAMEWORKS
from agent_server.agents.common.offline.langchain_model import turns_from_messages
from agent_server.agents.common.offline.openai_model import turns_from_items
from agent_server.agents.common.offline.script import ToolCall, plan_reply
from agent_server.agents.common.request_input import chat_messages, input_items
from agent_server.long_running.tools.durable_tool import current_idempotency_key, durable_tool
from agent_server.long_running.runs.recovery import resume_request
from agent_server.long_running.storage.store import Store
from agent_server.long_running.tools.tool_calls import AttemptToolCalls, RecordedToolCall, attempt_tool_calls
from bench.tool_calls import CLOCK, FINISHED, STARTED, OwnerAndSurvivor, killed_after_the_tool_finished, wait_until
from tests.support import new_response_id, run_async, store_with_response

VARIANTS = sorted(FRAMEWORKS)


# ----- the record, in Postgres ---------------------------------------------------------

def test_records_are_stored_once_per_key_in_order_and_go_with_their_response(pg_url, db_schema):
    async def scenario():
        async with store_with_response(pg_url, db_schema) as (store, rid):
            first = RecordedToolCall(f"{rid}:research:d1:1", "research", {"topic": "a"}, "out a", "call_1", 1)
            second = RecordedToolCall(f"{rid}:get_current_time:d2:1", "get_current_time", {}, {"n": 1}, "call_2", 1)
            await store.record_tool_call(rid, first)
            await store.record_tool_call(rid, second)
            # The same call finished again (a stale attempt): the first record stays.
            await store.record_tool_call(rid, RecordedToolCall(first.key, "research", {"topic": "a"}, "other",
                                                               "call_9", 2))
            recorded = await store.recorded_tool_calls(rid)
            # A response that is gone records nothing (no error for the tool).
            gone = new_response_id()
            await store.record_tool_call(gone, RecordedToolCall(f"{gone}:x:d:1", "x", {}, "o", "c", 1))
            missing = await store.recorded_tool_calls(gone)
            await store.delete_response(rid, "")
            after_delete = await store.recorded_tool_calls(rid)
            return recorded, missing, after_delete

    recorded, missing, after_delete = run_async(scenario())
    assert [(c.name, c.output, c.call_id, c.attempt_number) for c in recorded] == [
        ("research", "out a", "call_1", 1), ("get_current_time", {"n": 1}, "call_2", 1)]
    assert recorded[0].arguments == {"topic": "a"}
    assert missing == [] and after_delete == []


def _counting_tools():
    runs: list[tuple[str, dict, str | None]] = []

    @durable_tool
    async def lookup(query: str, depth: int = 1) -> str:
        """Look something up."""
        runs.append(("lookup", {"query": query, "depth": depth}, current_idempotency_key()))
        return f"found {query} at depth {depth}"

    @durable_tool(always_run=True)
    def clock() -> str:
        """Read the clock."""
        runs.append(("clock", {}, current_idempotency_key()))
        return f"tick {len(runs)}"

    return runs, lookup, clock


def test_durable_tool_keeps_signature_docstring_and_async_ness():
    _, lookup, clock = _counting_tools()
    assert inspect.iscoroutinefunction(lookup) and not inspect.iscoroutinefunction(clock)
    assert str(inspect.signature(lookup)) == "(query: 'str', depth: 'int' = 1) -> 'str'"  # this file's annotations
    assert lookup.__doc__ == "Look something up." and lookup.__name__ == "lookup"
    assert clock.always_run and not lookup.always_run
    # Outside a server run it is the plain function.
    assert run_async(lookup("x")) == "found x at depth 1" and clock() == "tick 2"


def test_both_sdks_build_the_same_tool_schema_as_for_the_plain_functions():
    from agents import function_tool
    from langchain_core.tools import StructuredTool
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from agent_server.agents.tools import TOOLS
    from agent_server.agents.langgraph_adapter.tools import as_langchain_tool
    from agent_server.agents.openai_adapter.tools import as_function_tool

    for tool in TOOLS:
        plain = tool.__wrapped__
        openai_plain, openai_durable = function_tool(plain), as_function_tool(tool)
        assert (openai_durable.name, openai_durable.description, openai_durable.params_json_schema) == (
            openai_plain.name, openai_plain.description, openai_plain.params_json_schema)
        lc_plain = (StructuredTool.from_function(coroutine=plain) if inspect.iscoroutinefunction(plain)
                    else StructuredTool.from_function(func=plain))
        assert convert_to_openai_tool(as_langchain_tool(tool)) == convert_to_openai_tool(lc_plain)
    # get_current_time, research, send_email, save_memory, search_memories, delete_memory
    assert [(tool.always_run, tool.needs_approval) for tool in TOOLS] == [
        (True, False), (False, False), (False, True), (False, False), (True, False), (False, False)]


def test_a_finished_call_is_recorded_before_it_returns_and_served_to_the_next_attempt(pg_url, db_schema):
    runs, lookup, clock = _counting_tools()

    async def attempt(store: Store, rid: str, number: int, prior):
        calls = AttemptToolCalls(rid, number, prior, lambda call: store.record_tool_call(rid, call))
        seen = []
        with attempt_tool_calls(calls):
            seen.append(await lookup("tides"))
            # Stored by the time the output is back: that is what "finished" means.
            seen.append([c.key for c in await store.recorded_tool_calls(rid)])
            seen.append(await lookup("tides", depth=1))  # the same arguments, a second call
            seen.append(await asyncio.to_thread(clock))  # SDKs run sync tools in threads
            seen.append(await lookup("reefs"))
        return seen

    async def scenario():
        async with store_with_response(pg_url, db_schema) as (store, rid):
            first = await attempt(store, rid, 1, [])
            recorded = await store.recorded_tool_calls(rid)
            # The next attempt finished only the first call before it too was killed.
            second = await attempt(store, rid, 2, recorded[:1])
            return rid, first, recorded, second, await store.recorded_tool_calls(rid)

    rid, first, recorded, second, final = run_async(scenario())
    assert first[0] == "found tides at depth 1" and first[1] == [recorded[0].key]
    assert [c.name for c in recorded] == ["lookup", "lookup", "clock", "lookup"]
    assert all(c.attempt_number == 1 and c.call_id.startswith("call_") for c in recorded)
    assert recorded[0].arguments == {"query": "tides", "depth": 1}
    digest = recorded[0].key.split(":")[2]
    assert [c.key for c in recorded[:2]] == [f"{rid}:lookup:{digest}:1", f"{rid}:lookup:{digest}:2"]
    # Attempt 2: the first lookup was served from the record; the rest ran.
    assert second[0] == first[0]
    ran_in_attempt_2 = runs[4:]
    assert [(name, args) for name, args, _ in ran_in_attempt_2] == [
        ("lookup", {"query": "tides", "depth": 1}), ("clock", {}), ("lookup", {"query": "reefs", "depth": 1})]
    # The keys are the same in both attempts: an outside system can deduplicate the repeats.
    assert [key for _, _, key in ran_in_attempt_2] == [recorded[1].key, recorded[2].key, recorded[3].key]
    # The always-run tool ran again (a new tick) though its call was recorded.
    assert second[3] != first[3]
    assert len(final) == 4  # the repeats kept attempt 1's records


def test_arguments_and_outputs_that_are_not_json_are_stored_as_json(pg_url, db_schema):
    from pydantic import BaseModel

    class Place(BaseModel):
        name: str
        depth: float

    class Report:
        def __str__(self) -> str:
            return "a report"

    @durable_tool
    async def survey(place: Place) -> Report:
        """Survey a place."""
        return Report()

    async def scenario():
        async with store_with_response(pg_url, db_schema) as (store, rid):
            calls = AttemptToolCalls(rid, 1, [], lambda call: store.record_tool_call(rid, call))
            with attempt_tool_calls(calls):
                output = await survey(Place(name="reef", depth=2.5))
            return output, await store.recorded_tool_calls(rid)

    output, (recorded,) = run_async(scenario())
    assert type(output).__name__ == "Report"  # the model gets the tool's own value
    assert recorded.arguments == {"place": {"name": "reef", "depth": 2.5}} and recorded.output == "a report"


def test_a_sync_tool_called_on_the_event_loop_runs_without_a_record():
    _, _, clock = _counting_tools()
    recorded = []

    async def scenario():
        async def record(call):
            recorded.append(call)

        with attempt_tool_calls(AttemptToolCalls(new_response_id(), 1, [], record)):
            return clock()

    assert run_async(scenario()) == "tick 1" and recorded == []


# ----- what a resumed attempt is given ------------------------------------------------

RECORDED = RecordedToolCall("resp_x:research:abc:1", "research", {"topic": "tides", "seconds": 2.0},
                            "Research on 'tides' finished after 2s.", "call_abc", 1)
ORIGINAL = {"input": [{"role": "user", "content": "Research tides for 2 seconds"}]}


def test_resumed_input_has_the_finished_calls_as_items_before_the_recovery_message():
    request, _ = resume_request(ORIGINAL, [], 2, "resp_x", [RECORDED])
    user, call, output, recovery = request["input"]
    assert user == ORIGINAL["input"][0]
    assert call == {"type": "function_call", "call_id": "call_abc", "name": "research",
                    "arguments": json.dumps({"topic": "tides", "seconds": 2.0})}
    assert output == {"type": "function_call_output", "call_id": "call_abc", "output": RECORDED.output}
    assert recovery["role"] == "user" and recovery["content"].startswith("[RECOVERY]")
    assert "returns that output instead of running the tool again" in recovery["content"]
    # Without finished calls the request is what it always was.
    plain, _ = resume_request(ORIGINAL, [], 2, "resp_x")
    assert len(plain["input"]) == 2 and "returns that output" not in plain["input"][1]["content"]


def test_both_sdks_take_the_resumed_input_and_the_offline_model_starts_over():
    request, _ = resume_request(ORIGINAL, [json.dumps({"type": "response.output_item.done", "item": {
        "type": "function_call", "name": "research", "arguments": '{"topic": "x"}', "call_id": "call_abc"}})],
        2, "resp_x", [RECORDED])
    parsed = ResponsesAgentRequest(**request)
    items = input_items(parsed)  # what the OpenAI Agents SDK is given
    assert [i.get("type") for i in items] == ["message", "function_call", "function_call_output", "message"]
    messages = convert_to_messages(chat_messages(parsed))  # what LangGraph's state holds
    assert messages[1].tool_calls[0]["id"] == messages[2].tool_call_id == "call_abc"
    assert messages[1].tool_calls[0]["args"] == {"topic": "tides", "seconds": 2.0}
    for turns in (turns_from_items(items), turns_from_messages(messages)):
        assert [t.role for t in turns][-2:] == ["tool", "user"]
        # Not the "research" quoted in the recovery text: the user's own request, again.
        assert plan_reply(turns, ["research", "get_current_time"]) == ToolCall(
            "research", {"topic": "tides", "seconds": 2.0})


# ----- both variants' handlers in this process -------------------------------------------

def _run_handler(agent, request: dict, prior) -> tuple[list[dict], list[RecordedToolCall]]:
    recorded: list[RecordedToolCall] = []

    async def record(call):
        recorded.append(call)

    async def collect():
        with attempt_tool_calls(AttemptToolCalls("resp_x", 2 if prior else 1, prior, record)):
            return [e async for e in agent.stream_handler(ResponsesAgentRequest(**request))]

    events = run_async(collect())
    return [e["item"] for e in events if e["type"] == "response.output_item.done"], recorded


def test_handler_records_the_sdk_call_id_and_serves_a_repeat_from_the_record(agent, caplog):
    first = {"input": [{"role": "user", "content": "Research kelp for 0.2 seconds"}]}
    (call, output, _), recorded = _run_handler(agent, first, [])
    assert [(c.name, c.call_id, c.output) for c in recorded] == [("research", call["call_id"], output["output"])]
    assert recorded[0].key == f"resp_x:research:{recorded[0].key.split(':')[2]}:1"

    # The record says research finished with a different output: the resumed handler gets that one.
    prior = [RecordedToolCall(recorded[0].key, "research", recorded[0].arguments, "RECORDED NOTES", "call_old", 1)]
    resumed, _ = resume_request(first, [], 2, "resp_x", prior)
    caplog.set_level("INFO", logger="agent_server")
    (call, output, message), again = _run_handler(agent, resumed, prior)
    assert call["name"] == "research" and output["output"] == "RECORDED NOTES"
    assert "RECORDED NOTES" in message["content"][0]["text"]
    assert again == []  # served, so nothing new to record
    assert not any("started" in r.getMessage() for r in caplog.records if "research" in r.getMessage())
    assert any("serving research from attempt 1's record" in r.getMessage() for r in caplog.records)


def test_handler_runs_an_always_run_tool_again(agent):
    first = {"input": [{"role": "user", "content": "What time is it?"}]}
    _, recorded = _run_handler(agent, first, [])
    prior = [RecordedToolCall(recorded[0].key, "get_current_time", {}, "1999-01-01T00:00:00+00:00", "call_old", 1)]
    resumed, _ = resume_request(first, [], 2, "resp_x", prior)
    (_, output, _), again = _run_handler(agent, resumed, prior)
    assert output["output"] != "1999-01-01T00:00:00+00:00"
    assert [c.key for c in again] == [recorded[0].key]  # ran, recorded under the same key


# ----- real servers of both variants, the owner SIGKILLed ------------------------------------

@pytest.fixture(scope="module", params=VARIANTS)
def servers(request, pg_url, tmp_path_factory, spawns):
    pair = OwnerAndSurvivor(request.param, pg_url, tmp_path_factory.mktemp(f"tools-{request.param}"))
    yield pair
    pair.close()


def test_killed_after_the_tool_finished_the_tool_ran_once_in_total(servers, sql):
    # The owner is killed while the answer streams, token by token, after research's record.
    result = killed_after_the_tool_finished(servers, sql, "research")
    rid, final = result["response_id"], result["final"]
    assert final["status"] == "completed" and final["attempt_number"] == 2, final
    ((name, key, attempt, output),) = servers.recorded_calls(sql, rid)
    assert (name, attempt) == ("research", 1) and key.startswith(f"{rid}:research:")
    assert result["executions"] == 1 and result["idempotency_keys"] == [key]
    log = servers.log()
    assert [m["key"] for m in FINISHED.finditer(log) if m["key"] == key] == [key]
    if servers.variant == "openai":
        # The replayed model call asked for research again: served from the record.
        assert f"{key}: serving research from attempt 1's record" in log
    else:
        # The graph went on from the checkpoint after its tools node.
        assert f"{rid} attempt 2: continuing the graph from its checkpoint" in log
    call, call_output, message = final["output"]
    assert call["name"] == "research" and json.loads(call["arguments"])["topic"].startswith("kelp-")
    assert call_output["output"] == output and output in message["content"][0]["text"]


def test_killed_during_the_tool_the_tool_runs_again_with_the_same_idempotency_key(servers, sql):
    topic = f"reef-{uuid.uuid4().hex[:8]}"
    rid = servers.post_background(f"Research {topic} for 6 seconds")
    wait_until(lambda: any(m["topic"] == topic for m in STARTED.finditer(servers.log())), "research starting")
    servers.kill_owner()  # research is running: not finished, not recorded

    final = servers.finished(rid)
    assert final["status"] == "completed" and final["attempt_number"] == 2, final
    log = servers.log()
    started = [m["key"] for m in STARTED.finditer(log) if m["topic"] == topic]
    assert len(started) == 2 and started[0] == started[1] and started[0].startswith(f"{rid}:research:")
    assert [m["key"] for m in FINISHED.finditer(log) if m["topic"] == topic] == started[:1]
    assert [(name, key, attempt) for name, key, attempt, _ in servers.recorded_calls(sql, rid)] == [
        ("research", started[0], 2)]
    assert final["output"][1]["output"] in final["output"][2]["content"][0]["text"]


def test_an_always_run_tool_runs_again_after_a_kill_if_its_step_runs_again(servers, sql):
    result = killed_after_the_tool_finished(servers, sql, "get_current_time")
    rid, final = result["response_id"], result["final"]
    assert final["status"] == "completed" and final["attempt_number"] == 2, final
    ((name, key, attempt, recorded_time),) = servers.recorded_calls(sql, rid)
    assert (name, attempt) == ("get_current_time", 1)
    runs = [m for m in CLOCK.finditer(servers.log()) if m["key"].startswith(f"{rid}:")]
    if servers.variant == "openai":
        # The replayed model call asks for the tool again: an always-run tool runs again, under one key.
        assert [m["key"] for m in runs] == [key, key]
    else:
        # The graph goes on from the checkpoint after its tools node: that step is not run again.
        assert [m["key"] for m in runs] == [key]
    # The log has the first reading, and a client sees the call's output once.
    assert final["output"][1]["output"] == runs[0]["now"] == recorded_time
    assert [item["type"] for item in final["output"]] == ["function_call", "function_call_output", "message"]
