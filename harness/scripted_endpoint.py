"""A scripted OpenAI-compatible Databricks serving endpoint on 127.0.0.1 that counts its calls.

It answers ``POST /serving-endpoints/chat/completions`` (streaming or not,
tool calls included) with what a ``reply(body)`` function says, and keeps
every request it was sent. A server pointed at it (``DATABRICKS_HOST`` and a
fake token, see :meth:`ScriptedEndpoint.server_env`) runs the real
``databricks-openai`` / ``ChatDatabricks`` clients over real HTTP; the agent
code is not patched. Usage is reported as the Chat Completions API does
(with ``stream_options.include_usage`` at the end of a stream), counting a
token per four characters, so figures can say what calls cost.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN = "fake-token"
ENDPOINT = "fake-llm"
CHAT_PATH = "/serving-endpoints/chat/completions"

#: ``reply(body) -> message``: the assistant message (``content`` and/or ``tool_calls``) to answer with.
Reply = Callable[[dict[str, Any]], dict[str, Any]]


def text_of(content: Any) -> str:
    """A chat message's text, whether a string or a list of parts."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """An assistant message calling ``name`` (a fresh call id, as a model would make)."""
    return tool_calls((name, arguments))


def tool_calls(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """An assistant message calling several tools at once, each ``(name, arguments)``."""
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
         "function": {"name": name, "arguments": json.dumps(arguments)}} for name, arguments in calls]}


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
    """Answer a ``http.server`` request with ``payload`` as JSON."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.server.keep({"method": "GET", "path": self.path})
        self.send_error(404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        request = {"method": "POST", "path": self.path, "body": body,
                   "authorization": self.headers.get("Authorization")}
        self.server.keep(request)
        if self.path != CHAT_PATH:
            return self.send_error(404)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._json(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"})
        reply = self.server.reply(body)
        finish = "tool_calls" if reply.get("tool_calls") else "stop"
        usage = {"prompt_tokens": tokens(json.dumps(body.get("messages"))),
                 "completion_tokens": tokens(json.dumps(reply))}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        request["usage"] = usage  # what this call was billed
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "created": int(time.time()), "model": body.get("model")}
        if not body.get("stream"):
            return self._json(200, {**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": reply, "finish_reason": finish}], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = {**base, "object": "chat.completion.chunk"}
        deltas: list[dict] = []
        if reply.get("tool_calls"):
            # One chunk per call, as a model that calls tools in parallel streams them.
            deltas += [{"role": "assistant", "tool_calls": [{"index": i, **call}]}
                       for i, call in enumerate(reply["tool_calls"])]
        else:
            words = reply["content"].split(" ")
            deltas += [{"role": "assistant", "content": w if i == 0 else " " + w} for i, w in enumerate(words)]
        for delta in deltas:
            self._sse({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            self._sse({**chunk, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _sse(self, payload: dict) -> None:
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()

    def _json(self, status: int, payload: dict) -> None:
        send_json(self, status, payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, reply: Reply):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def keep(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)


class ScriptedEndpoint:
    """The endpoint, serving in a thread while the ``with`` block runs (or until :meth:`close`)."""

    def __init__(self, reply: Reply):
        self._server = _Server(reply)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request so far, in order (a copy)."""
        with self._server._lock:
            return list(self._server.requests)

    def chat_requests(self, since: int = 0, containing: str | None = None) -> list[dict[str, Any]]:
        """The chat completion calls after the first ``since`` requests, those whose messages
        mention ``containing`` if given (a run's unique word)."""
        calls = [r for r in self.requests[since:] if r["path"] == CHAT_PATH]
        if containing is not None:
            calls = [r for r in calls if containing in json.dumps(r["body"].get("messages"))]
        return calls

    def server_env(self, config_dir: Path) -> dict[str, str]:
        """The environment that points a ``start-server`` process's Databricks clients here."""
        host, port = self.address
        return {
            "DATABRICKS_HOST": f"http://{host}:{port}", "DATABRICKS_TOKEN": TOKEN,
            "DATABRICKS_CONFIG_FILE": str(config_dir / "no-databrickscfg"),
            "DATABRICKS_CONFIG_PROFILE": "", "DATABRICKS_AUTH_TYPE": "",
            "DATABRICKS_CLIENT_ID": "", "DATABRICKS_CLIENT_SECRET": "",
            "LLM_ENDPOINT_NAME": ENDPOINT,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ScriptedEndpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
