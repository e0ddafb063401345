"""Both agent variants with the offline model: handlers driven directly, then
end to end through a real server process in all three request patterns, via
the official ``openai`` client."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import openai
import pytest
from mlflow.types.responses import ResponsesAgentRequest

from agent_server.agents import FRAMEWORKS
from agent_server.agents.common.model_choice import OFFLINE_MODEL_NAME, choose_model
from agent_server.agents.common.offline.script import split_tokens
from tests.support import ServerProcess, agent_server_process

VARIANTS = sorted(FRAMEWORKS)
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


# ----- which model --------------------------------------------------------------

def test_offline_without_endpoint_or_without_auth(tmp_path):
    no_config = str(tmp_path / "missing.cfg")
    assert choose_model({}).offline
    assert "LLM_ENDPOINT_NAME is not set" in choose_model({}).reason
    without_auth = choose_model({"LLM_ENDPOINT_NAME": "ep", "DATABRICKS_CONFIG_FILE": no_config})
    assert without_auth.offline and without_auth.name == OFFLINE_MODEL_NAME
    assert "no Databricks auth" in without_auth.reason
    with_host = choose_model({"LLM_ENDPOINT_NAME": "ep", "DATABRICKS_HOST": "https://x"})
    assert not with_host.offline and with_host.name == "ep"
    with_profile = choose_model({"LLM_ENDPOINT_NAME": "ep", "DATABRICKS_CONFIG_PROFILE": "dev"})
    assert with_profile.endpoint == "ep"
    cfg = tmp_path / "databrickscfg"
    cfg.write_text("[DEFAULT]\nhost = https://x\ntoken = t\n")
    assert choose_model({"LLM_ENDPOINT_NAME": "ep", "DATABRICKS_CONFIG_FILE": str(cfg)}).endpoint == "ep"


# ----- handlers, driven directly ------------------------------------------------

def run_stream(agent, text: str) -> list[dict]:
    async def collect():
        request = ResponsesAgentRequest(input=[{"role": "user", "content": text}])
        return [event async for event in agent.stream_handler(request)]

    return asyncio.run(asyncio.wait_for(collect(), timeout=60))


def done_items(events: list[dict]) -> list[dict]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


def test_handler_calls_get_current_time_and_answers_with_it(agent):
    events = run_stream(agent, "What time is it?")
    call, output, message = done_items(events)
    assert call["type"] == "function_call" and call["name"] == "get_current_time"
    assert output == {"type": "function_call_output", "call_id": call["call_id"], "output": output["output"]}
    assert output["output"] in message["content"][0]["text"]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) > 3  # token by token
    assert "".join(d["delta"] for d in deltas) == message["content"][0]["text"]
    assert {d["item_id"] for d in deltas} == {message["id"]}
    assert agent.MODEL.offline


def test_handler_calls_research_with_topic_and_seconds(agent):
    started = time.monotonic()
    call, output, message = done_items(run_stream(agent, "Please research tide pools for 0.5 seconds"))
    assert time.monotonic() - started >= 0.5
    assert call["name"] == "research"
    assert json.loads(call["arguments"]) == {"topic": "tide pools", "seconds": 0.5}
    assert "step 5/5" in output["output"] and output["output"] in message["content"][0]["text"]


def test_handler_without_a_tool_request_says_it_is_offline(agent):
    (message,) = done_items(run_stream(agent, "hello there"))
    assert "offline demo model, not an LLM" in message["content"][0]["text"]
    assert '"hello there"' in message["content"][0]["text"]


def test_invoke_handler_returns_the_stream_items(agent):
    request = ResponsesAgentRequest(input=[{"role": "user", "content": "what time is it"}])
    result = asyncio.run(agent.invoke_handler(request))
    assert [item["type"] for item in result["output"]] == ["function_call", "function_call_output", "message"]


def test_handler_continues_a_conversation_with_a_tool_result_in_the_input(agent):
    request = ResponsesAgentRequest(input=[
        {"role": "user", "content": "what time is it"},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_current_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "2000-01-01T00:00:00+00:00"},
        {"role": "user", "content": [{"type": "input_text", "text": "and now?"}]},
    ])

    async def collect():
        return [e async for e in agent.stream_handler(request)]

    (message,) = done_items(asyncio.run(collect()))
    assert "offline demo model" in message["content"][0]["text"] and '"and now?"' in message["content"][0]["text"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_offline_model_streams_at_the_configured_pace(variant):
    """Each token waits OFFLINE_MODEL_TOKEN_DELAY_SECONDS (checked on the model itself)."""
    from agent_server.agents.common.offline.script import TextReply, Turn, plan_reply

    text = plan_reply([Turn("user", "hi")], []).text
    assert isinstance(plan_reply([Turn("user", "hi")], []), TextReply)
    delay = 0.01
    started = time.monotonic()
    if variant == "openai":
        from agents import ModelSettings
        from agents.models.interface import ModelTracing

        from agent_server.agents.common.offline.openai_model import OfflineAgentsModel

        async def stream():
            model = OfflineAgentsModel(token_delay=delay)
            return [e async for e in model.stream_response(
                None, "hi", ModelSettings(), [], None, [], ModelTracing.DISABLED,
                previous_response_id=None, conversation_id=None, prompt=None)]

        events = asyncio.run(stream())
        streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert events[-1].type == "response.completed"
    else:
        from agent_server.agents.common.offline.langchain_model import OfflineChatModel

        async def stream():
            return [c async for c in OfflineChatModel(token_delay=delay).astream("hi")]

        streamed = "".join(c.content for c in asyncio.run(stream()))
    elapsed = time.monotonic() - started
    assert streamed == text
    assert elapsed >= delay * len(split_tokens(text)) * 0.9


# ----- end to end through the server --------------------------------------------

NO_PLACEHOLDERS = ("__fake_id__", "resp_placeholder_")


@pytest.fixture(scope="module", params=VARIANTS)
def server(request, pg_url, tmp_path_factory, spawns) -> ServerProcess:
    """``start-server --agent <variant>`` on the test database, offline model, no .env."""
    variant = request.param
    log_dir = tmp_path_factory.mktemp(f"agent-{variant}")
    proc = agent_server_process(variant, log_dir, {
        "DATABASE_URL": pg_url,
        "AGENT_SERVER_DB_SCHEMA": f"agents_{variant}_{uuid.uuid4().hex[:8]}",
        "LLM_ENDPOINT_NAME": "",
        "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0.005",
        "AGENT_FRAMEWORK": "",
    })
    proc.start(timeout=120)
    proc.variant = variant
    yield proc
    proc.kill()


@pytest.fixture
def client(server) -> openai.OpenAI:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", timeout=60, max_retries=0) as c:
        yield c


def test_server_logs_variant_and_model(server, client):
    log = server.log_tail(100_000)
    assert f"Agent variant {server.variant}; model {OFFLINE_MODEL_NAME} (LLM_ENDPOINT_NAME is not set)" in log


def test_standard_request(server, client):
    response = client.responses.create(model="agent", input="What time is it?")
    assert [item.type for item in response.output] == ["function_call", "function_call_output", "message"]
    assert response.output[0].name == "get_current_time"
    assert response.output[1].output in response.output_text


def test_standard_streaming_request(server, client):
    events = list(client.responses.create(model="agent", input="What time is it?", stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [item.type for item in done] == ["function_call", "function_call_output", "message"]
    assert text == done[-1].content[0].text


def test_background_and_poll_with_the_long_running_tool(server, client):
    created = client.responses.create(model="agent", input="Research tide pools for 1 seconds", background=True)
    assert created.status in ("queued", "in_progress") and created.id.startswith("resp_")
    deadline = time.monotonic() + 60
    response = client.responses.retrieve(created.id)
    while response.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.1)
        response = client.responses.retrieve(created.id)
    assert response.status == "completed", response
    assert response.model == OFFLINE_MODEL_NAME
    call, output, message = response.output
    assert call.type == "function_call" and call.name == "research"
    assert json.loads(call.arguments) == {"topic": "tide pools", "seconds": 1.0}
    assert "step 5/5" in output.output and output.output in response.output_text
    assert not any(p in response.model_dump_json() for p in NO_PLACEHOLDERS)


def test_background_and_stream_then_reconnect(server, client):
    events = list(client.responses.create(model="agent", input="What time is it?", background=True, stream=True))
    assert events[0].type == "response.created"
    response_id = events[0].response.id
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    final = events[-1].response
    assert final.id == response_id and final.model == OFFLINE_MODEL_NAME
    assert [item.type for item in final.output] == ["function_call", "function_call_output", "message"]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(d.delta for d in deltas) == final.output_text
    assert final.output[1].output in final.output_text
    # Placeholder ids were replaced before storing, and each item has an id of its own.
    raw = json.dumps([e.model_dump() for e in events])
    assert not any(p in raw for p in NO_PLACEHOLDERS)
    assert {d.item_id for d in deltas} == {final.output[2].id}
    assert len({item.id for item in final.output}) == 3 and response_id not in {item.id for item in final.output}

    # A client that dropped after event 3 gets exactly the rest.
    replay = list(client.responses.retrieve(response_id, stream=True, starting_after=3))
    assert [e.sequence_number for e in replay] == list(range(4, len(events)))
    assert replay[-1].type == "response.completed"


def test_agent_flag_reaches_every_worker_process(pg_url, tmp_path, spawns):
    """--workers N starts fresh processes; they must run the variant the flag chose, not the env's."""
    server = agent_server_process("langgraph", tmp_path, {
        "DATABASE_URL": pg_url, "LLM_ENDPOINT_NAME": "",
        "AGENT_SERVER_DB_SCHEMA": f"agents_workers_{uuid.uuid4().hex[:8]}",
        "AGENT_FRAMEWORK": "openai",  # the --agent flag wins
        "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0",
    }, "--workers", "2")
    with server as proc, \
            openai.OpenAI(base_url=proc.base_url, api_key="unused", timeout=60, max_retries=0) as client:
        for _ in range(6):
            response = client.responses.create(model="agent", input="hello")
            assert response.status == "completed" and "offline demo model" in response.output_text
        # Every process (the parent and both workers) loaded the flag's variant, none the env's.
        assert proc.log_tail(100_000).count("Agent variant langgraph") >= 2
        assert "Agent variant openai" not in proc.log_tail(100_000)
