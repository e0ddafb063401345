"""The Databricks model path over real HTTP.

A fake OpenAI-compatible serving endpoint on 127.0.0.1 answers
``POST /serving-endpoints/chat/completions`` (streaming and not, with tool
calls). ``DATABRICKS_HOST`` points at it with a fake token, so the real
``databricks-openai`` and ``databricks-langchain`` clients inside the server
talk to it; the agent code is not patched.
"""

from __future__ import annotations

import uuid

import openai
import pytest

from agent_server.agents import FRAMEWORKS
from harness.scripted_endpoint import CHAT_PATH, ENDPOINT, TOKEN, ScriptedEndpoint
from harness.scripted_endpoint import text_of as _text
from harness.scripted_endpoint import tool_call
from tests.support import ServerProcess, agent_server_process


def fake_reply(body: dict) -> dict:
    """The fake LLM: calls get_current_time when asked the time, then answers with the result."""
    last = body["messages"][-1]
    tools = {t["function"]["name"] for t in body.get("tools") or []}
    if last["role"] == "tool":
        return {"role": "assistant", "content": f"The endpoint saw the tool result: {_text(last['content'])}"}
    if "time" in _text(last.get("content")).lower() and "get_current_time" in tools:
        return tool_call("get_current_time", {})
    return {"role": "assistant", "content": "Hello from the fake serving endpoint."}


@pytest.fixture(scope="module")
def fake_endpoint():
    with ScriptedEndpoint(fake_reply) as endpoint:
        yield endpoint


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def server(request, fake_endpoint, pg_url, tmp_path_factory, spawns) -> ServerProcess:
    variant = request.param
    log_dir = tmp_path_factory.mktemp(f"databricks-{variant}")
    proc = agent_server_process(variant, log_dir, {
        **fake_endpoint.server_env(log_dir),
        "DATABASE_URL": pg_url,
        "AGENT_SERVER_DB_SCHEMA": f"dbx_{variant}_{uuid.uuid4().hex[:8]}",
    })
    proc.start(timeout=120)
    proc.variant = variant
    yield proc
    proc.kill()


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server.base_url, api_key="unused", timeout=60, max_retries=0) as c:
        yield c


def chat_requests(fake_endpoint, since: int) -> list[dict]:
    return fake_endpoint.chat_requests(since)


def test_databricks_clients_import():
    """The real-model path needs both client libraries importable (databricks-langchain
    imports langchain-mcp-adapters, which breaks with mcp 2.x)."""
    import databricks_openai  # noqa: F401

    try:
        import databricks_langchain  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"databricks-langchain cannot be imported ({exc}); the LangGraph variant cannot use a "
                    "Databricks endpoint. Pin a compatible mcp (mcp<2) in pyproject.toml.")


def test_startup_log_names_the_endpoint(server):
    assert f"model {ENDPOINT} (Databricks serving endpoint {ENDPOINT}" in server.log_tail(100_000)


def test_standard_request_calls_the_endpoint_and_its_tool(server, client, fake_endpoint):
    since = len(fake_endpoint.requests)
    response = client.responses.create(model="agent", input="What time is it?")
    assert [item.type for item in response.output] == ["function_call", "function_call_output", "message"], \
        server.log_tail()
    tool_output = response.output[1].output
    assert response.output_text == f"The endpoint saw the tool result: {tool_output}"

    first, second = chat_requests(fake_endpoint, since)
    for sent in (first, second):
        assert sent["authorization"] == f"Bearer {TOKEN}"
        assert sent["body"]["model"] == ENDPOINT
        assert {t["function"]["name"] for t in sent["body"]["tools"]} == {
            "get_current_time", "research", "send_email", "save_memory", "search_memories", "delete_memory"}
    assert first["body"]["messages"][-1]["role"] == "user"
    tool_message = second["body"]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == response.output[0].call_id
    assert _text(tool_message["content"]) == tool_output
    # Besides the SDK's host-metadata probe (GET, answered 404), only chat completions were called.
    assert {r["path"] for r in fake_endpoint.requests[since:] if r["method"] == "POST"} == {CHAT_PATH}


def test_background_streaming_request_through_the_endpoint(server, client, fake_endpoint):
    events = list(client.responses.create(model="agent", input="Say hello", background=True, stream=True))
    final = events[-1].response
    assert events[-1].type == "response.completed", events[-1]
    assert final.model == ENDPOINT
    assert final.output_text == "Hello from the fake serving endpoint."
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == final.output_text  # really streamed
