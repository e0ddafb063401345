"""MCP tools: settings, the offline model's named-tool rule, and both variants
end to end against real MCP servers (tests/mcp_server.py) in background runs."""

from __future__ import annotations

import json
import time
import uuid

import openai
import pytest

from agent_server.agents import FRAMEWORKS
from agent_server.agents.common.mcp_servers import McpSettingsError, Unavailable, mcp_settings, unavailable_note
from agent_server.agents.common.offline.script import TextReply, ToolCall, Turn, plan_reply
from tests.support import agent_server_process

# ----- settings -----------------------------------------------------------------


def test_settings_name_each_server_and_pick_its_auth():
    settings = mcp_settings({
        "DATABRICKS_HOST": "adb-1.azuredatabricks.net",
        "MCP_SERVERS": " /api/2.0/mcp/functions/system/ai, genie=/api/2.0/mcp/genie/01ab ,"
                       "ext=https://tools.example.com/mcp, app=https://my-mcp-1.aws.databricksapps.com/mcp,"
                       "ws=https://adb-1.azuredatabricks.net/api/2.0/mcp/vector-search/main/docs",
        "MCP_ON_BEHALF_OF_USER": "true",
    })
    assert [(s.name, s.databricks_auth) for s in settings.servers] == [
        ("functions-system-ai", True), ("genie", True), ("ext", False), ("app", True), ("ws", True),
    ]
    assert settings.on_behalf_of_user and settings.connect_timeout == 20 and settings.tool_timeout == 300
    assert mcp_settings({}).servers == () and not mcp_settings({}).on_behalf_of_user


@pytest.mark.parametrize("environ, message", [
    ({"MCP_SERVERS": "x=ftp://host/mcp"}, "must start with http://, https:// or /"),
    ({"MCP_SERVERS": "tools.example.com/mcp"}, "must start with http://"),
    ({"MCP_SERVERS": "a=/api/2.0/mcp/genie/1,a=/api/2.0/mcp/genie/2"}, "repeated: a"),
    ({"MCP_SERVERS": "bad name=/x"}, "may use letters"),
    ({"MCP_ON_BEHALF_OF_USER": "maybe"}, "must be true or false"),
    ({"MCP_CONNECT_TIMEOUT_SECONDS": "0"}, "more than 0"),
    ({"MCP_TOOL_TIMEOUT_SECONDS": "soon"}, "number of seconds"),
])
def test_malformed_settings_are_refused_with_the_reason(environ, message):
    with pytest.raises(McpSettingsError, match=message):
        mcp_settings(environ)


def test_offline_model_calls_a_tool_the_user_names():
    tools = ["get_current_time", "research", "add"]
    assert plan_reply([Turn("user", 'Use the add tool with {"a": 2, "b": 3}')], tools) == \
        ToolCall("add", {"a": 2, "b": 3})
    assert plan_reply([Turn("user", "call `add`")], tools) == ToolCall("add", {})
    # Not an available tool: the usual rules, then the fallback, which lists the extra tools.
    fallback = plan_reply([Turn("user", "use the subtract tool")], tools)
    assert isinstance(fallback, TextReply) and "(tools: add)" in fallback.text
    bad = plan_reply([Turn("user", "use add with {not json}")], tools)
    assert isinstance(bad, TextReply) and "one JSON object" in bad.text
    assert plan_reply([Turn("tool", "5", "add")], tools) == TextReply("The add tool returned: 5")


def test_note_names_each_unavailable_server():
    note = unavailable_note([Unavailable("genie", "401 Unauthorized"), Unavailable("calc", "no answer in time")])
    assert note == ("Note: MCP servers unavailable, answering without their tools: "
                    "genie (401 Unauthorized); calc (no answer in time).")


# ----- end to end ---------------------------------------------------------------

USER_TOKEN = "user-token-for-mcp-test"


def agent_env(port: int) -> dict[str, str]:
    """Three MCP servers: a plain one, a Databricks one (on the stand-in
    workspace host, so with Databricks auth, on behalf of the user) and one
    whose URL is wrong."""
    return {
        "LLM_ENDPOINT_NAME": "",
        "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0",
        # The stand-in workspace is localhost, so the 127.0.0.1 URLs are not on it.
        "DATABRICKS_HOST": f"http://localhost:{port}",
        "DATABRICKS_TOKEN": "app-token",
        "DATABRICKS_CONFIG_PROFILE": "",
        "MCP_SERVERS": f"calc=http://127.0.0.1:{port}/calc/mcp,identity=/identity/mcp,"
                       f"broken=http://127.0.0.1:{port}/missing",
        "MCP_ON_BEHALF_OF_USER": "true",
        "MCP_CONNECT_TIMEOUT_SECONDS": "30",
    }


def check_add_call(items: list[dict]) -> None:
    note, call, output, answer = items
    assert note["type"] == "message" and "broken (" in note["content"][0]["text"]
    assert "calc" not in note["content"][0]["text"] and "identity" not in note["content"][0]["text"]
    assert call["type"] == "function_call" and call["name"] == "add"
    assert json.loads(call["arguments"]) == {"a": 2, "b": 3}
    assert output["type"] == "function_call_output" and "5" in output["output"]
    assert answer["content"][0]["text"] == "The add tool returned: 5"


def check_whoami_call(items: list[dict]) -> None:
    assert [item["type"] for item in items] == ["message", "function_call", "function_call_output", "message"]
    assert items[1]["name"] == "whoami"
    assert items[3]["content"][0]["text"] == f"The whoami tool returned: {USER_TOKEN}"


def check_left_out_without_token(items: list[dict]) -> None:
    note, answer = items
    assert "identity (no X-Forwarded-Access-Token on this request" in note["content"][0]["text"]
    assert "broken (" in note["content"][0]["text"]
    # whoami is not offered, so the offline model falls back (and lists the tools it has).
    assert "offline demo model" in answer["content"][0]["text"]
    assert "(tools: add)" in answer["content"][0]["text"]


CASES = [
    ('Use the add tool with {"a": 2, "b": 3}', True, check_add_call),
    ("use the whoami tool", True, check_whoami_call),
    ("use the whoami tool", False, check_left_out_without_token),
]


@pytest.fixture(scope="module")
def client(mcp_server, pg_url, tmp_path_factory, spawns) -> openai.OpenAI:
    """``start-server`` (OpenAI Agents SDK variant) with the three MCP servers."""
    proc = agent_server_process("openai", tmp_path_factory.mktemp("mcp-openai"), {
        **agent_env(mcp_server.port),
        "DATABASE_URL": pg_url,
        "AGENT_SERVER_DB_SCHEMA": f"mcp_openai_{uuid.uuid4().hex[:8]}",
        "AGENT_FRAMEWORK": "",
    })
    proc.start(timeout=180)
    with openai.OpenAI(base_url=proc.base_url, api_key="unused", timeout=60, max_retries=0) as c:
        yield c
    proc.kill()


def background(client: openai.OpenAI, text: str, headers: dict) -> list[dict]:
    created = client.responses.create(model="agent", input=text, background=True, extra_headers=headers)
    deadline = time.monotonic() + 90
    response = client.responses.retrieve(created.id)
    while response.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.1)
        response = client.responses.retrieve(created.id)
    assert response.status == "completed", response
    return [item.model_dump(exclude_none=True) for item in response.output]


@pytest.mark.parametrize("text, with_token, check", CASES, ids=["add", "whoami", "no-token"])
def test_background_run_uses_mcp_tools(client, text, with_token, check):
    """OpenAI Agents SDK variant, through the server, in background runs."""
    check(background(client, text, {"x-forwarded-access-token": USER_TOKEN} if with_token else {}))


def test_langgraph_handler_uses_mcp_tools(mcp_server, monkeypatch, tmp_path):
    """LangGraph variant: its stream handler driven directly (what a background run executes),
    with the request headers set as the server sets them."""
    import asyncio
    import importlib
    import sys

    import mlflow.genai.agent_server.server as registry
    from mlflow.genai.agent_server import set_request_headers
    from mlflow.types.responses import ResponsesAgentRequest

    for name, value in {**agent_env(mcp_server.port), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}.items():
        monkeypatch.setenv(name, value)
    # MLflow allows one handler registration per process; import the variant afresh.
    monkeypatch.setattr(registry, "_invoke_function", None)
    monkeypatch.setattr(registry, "_stream_function", None)
    module_name = FRAMEWORKS["langgraph"]
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    agent = importlib.import_module(module_name)
    try:
        for text, with_token, check in CASES:
            async def run() -> list[dict]:
                set_request_headers({"x-forwarded-access-token": USER_TOKEN} if with_token else {})
                request = ResponsesAgentRequest(input=[{"role": "user", "content": text}])
                return [e["item"] async for e in agent.stream_handler(request)
                        if e["type"] == "response.output_item.done"]

            check(asyncio.run(asyncio.wait_for(run(), timeout=90)))
    finally:
        sys.modules.pop(module_name, None)
