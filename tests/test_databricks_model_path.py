"""The Databricks model path over real HTTP.

A fake OpenAI-compatible serving endpoint on 127.0.0.1 answers
``POST /serving-endpoints/chat/completions`` (streaming and not, with tool
calls). ``DATABRICKS_HOST`` points at it with a fake token, so the real
``databricks-openai`` and ``databricks-langchain`` clients inside the server
talk to it; the agent code is not patched.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from agent_server.agents import FRAMEWORKS
from tests.support import ServerProcess, agent_server_process

TOKEN = "fake-token"
ENDPOINT = "fake-llm"
CHAT_PATH = "/serving-endpoints/chat/completions"


def _text(content) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def fake_reply(body: dict) -> dict:
    """The fake LLM: calls get_current_time when asked the time, then answers with the result."""
    last = body["messages"][-1]
    tools = {t["function"]["name"] for t in body.get("tools") or []}
    if last["role"] == "tool":
        return {"role": "assistant", "content": f"The endpoint saw the tool result: {_text(last['content'])}"}
    if "time" in _text(last.get("content")).lower() and "get_current_time" in tools:
        return {"role": "assistant", "content": None, "tool_calls": [{
            "id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
            "function": {"name": "get_current_time", "arguments": "{}"}}]}
    return {"role": "assistant", "content": "Hello from the fake serving endpoint."}


class FakeServingEndpoint(BaseHTTPRequestHandler):
    requests: list[dict]  # set per server

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.server.requests.append({"method": "GET", "path": self.path})
        self.send_error(404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests.append({"method": "POST", "path": self.path, "body": body,
                                     "authorization": self.headers.get("Authorization")})
        if self.path != CHAT_PATH:
            return self.send_error(404)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._json(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"})
        reply = fake_reply(body)
        finish = "tool_calls" if reply.get("tool_calls") else "stop"
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body.get("model")}
        if not body.get("stream"):
            return self._json(200, {**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": reply, "finish_reason": finish}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = {**base, "object": "chat.completion.chunk"}
        deltas: list[dict] = []
        if reply.get("tool_calls"):
            deltas.append({"role": "assistant", "tool_calls": [{"index": 0, **reply["tool_calls"][0]}]})
        else:
            words = reply["content"].split(" ")
            deltas += [{"role": "assistant", "content": w if i == 0 else " " + w} for i, w in enumerate(words)]
        for delta in deltas:
            self._sse({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _sse(self, payload: dict) -> None:
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def fake_endpoint():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeServingEndpoint)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def server(request, fake_endpoint, pg_url, tmp_path_factory, spawns) -> ServerProcess:
    variant = request.param
    log_dir = tmp_path_factory.mktemp(f"databricks-{variant}")
    host, port = fake_endpoint.server_address
    proc = agent_server_process(variant, log_dir, {
        "DATABRICKS_HOST": f"http://{host}:{port}",
        "DATABRICKS_TOKEN": TOKEN,
        "DATABRICKS_CONFIG_FILE": str(log_dir / "no-databrickscfg"),
        "DATABRICKS_CONFIG_PROFILE": "", "DATABRICKS_AUTH_TYPE": "",
        "DATABRICKS_CLIENT_ID": "", "DATABRICKS_CLIENT_SECRET": "",
        "LLM_ENDPOINT_NAME": ENDPOINT,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
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
    return [r for r in fake_endpoint.requests[since:] if r["path"] == CHAT_PATH]


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
            "get_current_time", "research", "save_memory", "search_memories", "delete_memory"}
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
