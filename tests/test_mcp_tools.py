"""MCP tools: settings, the offline model's named-tool rule, and both variants
end to end against real MCP servers (tests/mcp_server.py) in background runs."""

from __future__ import annotations

import json
import time
import uuid

import openai
import pytest

from agent_server.agents import FRAMEWORKS
from agent_server.agents.mcp_servers import McpSettingsError, mcp_settings, unavailable_note, Unavailable
from agent_server.agents.offline.script import TextReply, ToolCall, Turn, plan_reply
from tests.support import ServerProcess, agent_server_process, python_argv

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


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory) -> ServerProcess:
    proc = ServerProcess(python_argv("tests/mcp_server.py"),
                         log_path=tmp_path_factory.mktemp("mcp") / "mcp.log")
    proc.start(timeout=120)
    yield proc
    proc.kill()


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def client(request, mcp_server, pg_url, tmp_path_factory) -> openai.OpenAI:
    """An agent server with three MCP servers: a plain one, a Databricks one
    (on the "workspace" host, so with Databricks auth, on behalf of the user)
    and one whose URL is wrong."""
    variant = request.param
    port = mcp_server.port
    proc = agent_server_process(variant, tmp_path_factory.mktemp(f"mcp-{variant}"), {
        "DATABASE_URL": pg_url,
        "AGENT_SERVER_DB_SCHEMA": f"mcp_{variant}_{uuid.uuid4().hex[:8]}",
        "LLM_ENDPOINT_NAME": "",
        "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0",
        "AGENT_FRAMEWORK": "",
        # The test's stand-in workspace: localhost, so 127.0.0.1 URLs are not on it.
        "DATABRICKS_HOST": f"http://localhost:{port}",
        "DATABRICKS_TOKEN": "app-token",
        "DATABRICKS_CONFIG_PROFILE": "",
        "MCP_SERVERS": f"calc=http://127.0.0.1:{port}/calc/mcp,identity=/identity/mcp,"
                       f"broken=http://127.0.0.1:{port}/missing",
        "MCP_ON_BEHALF_OF_USER": "true",
        "MCP_CONNECT_TIMEOUT_SECONDS": "30",
    })
    proc.start(timeout=180)
    with openai.OpenAI(base_url=proc.base_url, api_key="unused", timeout=60, max_retries=0) as c:
        yield c
    proc.kill()


def background(client: openai.OpenAI, text: str, headers: dict | None = None):
    created = client.responses.create(model="agent", input=text, background=True, extra_headers=headers or {})
    deadline = time.monotonic() + 90
    response = client.responses.retrieve(created.id)
    while response.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.1)
        response = client.responses.retrieve(created.id)
    assert response.status == "completed", response
    return response


def test_agent_calls_an_mcp_tool_and_skips_a_broken_server(client):
    response = background(client, 'Use the add tool with {"a": 2, "b": 3}',
                          {"x-forwarded-access-token": USER_TOKEN})
    note, call, output, answer = response.output
    assert note.type == "message" and "broken (" in note.content[0].text
    assert "calc" not in note.content[0].text and "identity" not in note.content[0].text
    assert call.type == "function_call" and call.name == "add" and json.loads(call.arguments) == {"a": 2, "b": 3}
    assert output.type == "function_call_output" and "5" in output.output
    assert answer.content[0].text == "The add tool returned: 5"


def test_databricks_mcp_server_is_called_on_behalf_of_the_user(client):
    response = background(client, "use the whoami tool", {"x-forwarded-access-token": USER_TOKEN})
    assert [item.type for item in response.output] == ["message", "function_call", "function_call_output", "message"]
    assert response.output[1].name == "whoami"
    assert response.output[3].content[0].text == f"The whoami tool returned: {USER_TOKEN}"


def test_without_a_forwarded_token_the_user_scoped_server_is_left_out(client):
    response = background(client, "use the whoami tool")
    note, answer = response.output
    assert "identity (no X-Forwarded-Access-Token on this request" in note.content[0].text
    assert "broken (" in note.content[0].text
    # whoami is not offered, so the offline model falls back (and lists the tools it has).
    assert "offline demo model" in answer.content[0].text and "(tools: add)" in answer.content[0].text
