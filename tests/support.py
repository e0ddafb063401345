"""Helpers shared by the tests: real server processes on 127.0.0.1, SSE
reading, and direct access to the engine's database."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from agent_server.long_running.storage.database import Database, DatabaseTarget
from agent_server.long_running.storage.models import Status
from agent_server.long_running.storage.queries import Queries
from agent_server.long_running.storage.store import Store
from harness.scripted_endpoint import send_json, text_of, tool_calls

# One implementation of "a server in a child process", shared with the scripts.
from scripts.server_process import PROJECT_ROOT, ServerProcess, free_port  # noqa: E402,F401


#: The line the demo ``send_email`` tool (``agent_server/agents/tools.py``) logs each time it runs.
SENT_EMAIL = re.compile(r"send_email to (?P<to>\S+) \(idempotency key (?P<key>\S+)\)")

#: Whom the scripted model of :func:`team_reply` emails, in one turn.
TEAM = ("ada@example.com", "bob@example.com")
_ASK_TEAM = re.compile(r"Email the team about (?P<topic>[^.!?\n]+)")


def team_reply(body: dict) -> dict:
    """A scripted model (``harness/scripted_endpoint.py``) that answers "Email the team about X" with
    a ``send_email`` call per member of :data:`TEAM` in one turn, as a model calling tools in parallel
    does, and then summarises the tool results it is given."""
    messages = body["messages"]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    results = [text_of(m.get("content")) for m in messages[last_user + 1:] if m["role"] == "tool"]
    if results:
        return {"role": "assistant", "content": "Summary: " + " | ".join(results)}
    ask = _ASK_TEAM.search(text_of(messages[last_user].get("content")))
    if ask is None:
        return {"role": "assistant", "content": "Hello from the scripted serving endpoint."}
    return tool_calls(*[("send_email", {"to": to, "subject": ask["topic"], "body": "Hello."}) for to in TEAM])


def python_argv(*args: str) -> list[str]:
    """A command that runs with this test session's interpreter."""
    return [sys.executable, *args]


def agent_server_process(variant: str, log_dir: Path, env: dict[str, str], *args: str) -> ServerProcess:
    """``start-server --agent <variant> [args]``, isolated from the developer's ``.env``,
    Lakebase settings and MLflow experiment; ``env`` adds to (or overrides) that."""
    isolated = {
        "AGENT_SERVER_ENV_FILE": "",  # a developer's .env must not leak into tests
        "HOST": "127.0.0.1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{log_dir}/mlflow.db",
        "MLFLOW_EXPERIMENT_ID": "",
        "DATABRICKS_APP_NAME": "",
        "LAKEBASE_AUTOSCALING_ENDPOINT": "", "LAKEBASE_AUTOSCALING_PROJECT": "",
        "LAKEBASE_AUTOSCALING_BRANCH": "", "LAKEBASE_INSTANCE_NAME": "",
    }
    argv = [sys.executable, "-c", "from agent_server.start_server import main; main()", "--agent", variant, *args]
    return ServerProcess(argv, env={**isolated, **env}, log_path=log_dir / "server.log")


def iter_sse(lines):
    """Frames of an SSE body as they arrive: dicts for JSON data, '[DONE]' for the end."""
    for line in lines:
        if line.startswith("data: "):
            payload = line[len("data: "):]
            yield payload if payload == "[DONE]" else json.loads(payload)


def parse_sse(lines) -> list[dict | str]:
    """All frames of an SSE body (reads it to the end)."""
    return list(iter_sse(lines))


def stream_frames(client: httpx.Client, method: str, url: str, **kwargs) -> list[dict | str]:
    """Read a whole SSE response (until the server closes it)."""
    with client.stream(method, url, **kwargs) as response:
        response.raise_for_status()
        return parse_sse(response.iter_lines())


def wait_for_status(client: httpx.Client, url: str, statuses: set[str], timeout: float = 30.0,
                    headers: dict | None = None) -> dict:
    """Poll GET ``url`` until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(url, headers=headers).json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.05)
    raise TimeoutError(f"{url} still {body.get('status')!r} after {timeout}s: {body}")


def read_records(path: Path) -> list[dict]:
    """The synthetic agent's invocation record (one JSON object a line)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def open_database(pg_url: str, schema: str) -> Database:
    """The engine's database layer on ``schema`` (created and migrated), as a worker opens it."""
    db = Database(target=DatabaseTarget("url", url=pg_url), queries=Queries(schema), statement_timeout_ms=5000)
    await db.open()
    return db


def run_async(coro, timeout: float = 60.0):
    """``coro`` run to the end in a new event loop, within ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout=timeout))


def new_response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


@asynccontextmanager
async def store_with_response(pg_url: str, schema: str) -> AsyncIterator[tuple[Store, str]]:
    """The engine's store on ``schema`` and a new running response in it (closed after the block)."""
    db = await open_database(pg_url, schema)
    try:
        store = Store(db)
        rid = new_response_id()
        await insert_response(store, rid)
        yield store, rid
    finally:
        await db.close()


async def insert_response(store: Store, rid: str, status: Status = Status.IN_PROGRESS) -> None:
    """A response row with event 0, as an accepted request leaves it."""
    await store.insert_response(response_id=rid, owner="", status=status, worker_id="w", created_at=time.time(),
                                request={"input": []}, request_headers={}, model="m",
                                created_event=json.dumps({"type": "response.created"}))


# ------------------------------------------------------- fake Databricks workspace

FAKE_TOKEN = "fake"


class FakeWorkspaceServer:
    """A JSON-over-HTTP server on 127.0.0.1 that answers like a Databricks
    workspace: ``handle(method, path, query, body, authorization)`` returns
    ``(status, payload)``. The real ``databricks-sdk`` talks to it."""

    def __init__(self, handle) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                status, payload = handle(
                    self.command, url.path, parse_qs(url.query), body, self.headers.get("Authorization", "")
                )
                send_json(self, status, payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeWorkspaceServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def point_sdk_at(monkeypatch, host: str, config_dir: Path) -> None:
    """Only the fake: no profile file, no other Databricks, Lakebase or MLflow settings."""
    import os

    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "LAKEBASE_", "MLFLOW_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_HOST", host)
    monkeypatch.setenv("DATABRICKS_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config_dir / "no-databrickscfg"))


# ------------------------------------------------------------ bundle JSON schema

# Shipped next to the repository, never inside it: the file is the CLI's and
# changes with each CLI release.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "shared/schemas/databricks-bundle.schema.json"


def schema_errors(bundle: dict, schema_path: Path = SCHEMA_PATH) -> list[str]:
    """Validate ``bundle`` against the CLI's JSON schema; return readable errors.

    The schema's patterns use ``\\p{L}``, which Python's ``re`` lacks, so the
    ``pattern`` keyword is re-implemented with the ``regex`` package.
    """
    import json

    import jsonschema
    import regex

    def pattern(validator, patrn, instance, schema):
        if validator.is_type(instance, "string") and not regex.search(patrn, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    base = jsonschema.Draft202012Validator
    validator_cls = jsonschema.validators.extend(base, {"pattern": pattern})
    validator = validator_cls(json.loads(schema_path.read_text()))
    errors = []
    for error in validator.iter_errors(bundle):
        # oneOf errors hide the real cause in their context; show the deepest.
        leaf = error
        while leaf.context:
            leaf = max(leaf.context, key=lambda e: len(e.absolute_path))
        path = "/".join(str(p) for p in leaf.absolute_path)
        errors.append(f"{path}: {leaf.message}")
    return errors


@contextmanager
def offline_variant_servers(pg_url: str, tmp_path_factory, label: str, variants,
                            env: dict[str, str] | None = None) -> Iterator[dict[str, ServerProcess]]:
    """One ``start-server --agent <variant>`` per variant (offline model, fast tokens), each on a
    schema of its own (``proc.schema``), started side by side (start-up dominates), killed after.
    ``env`` adds settings."""
    procs = {variant: agent_server_process(variant, tmp_path_factory.mktemp(f"{label}-{variant}"), {
        "DATABASE_URL": pg_url,
        "AGENT_SERVER_DB_SCHEMA": f"{label}_{variant}_{uuid.uuid4().hex[:8]}",
        "LLM_ENDPOINT_NAME": "",
        "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0.002",
        "AGENT_FRAMEWORK": "",
        **(env or {}),
    }) for variant in variants}
    try:
        for proc in procs.values():
            proc.launch()
        for proc in procs.values():
            proc.wait_until_healthy(180, database=True)
            proc.schema = proc.env["AGENT_SERVER_DB_SCHEMA"]
        yield procs
    finally:
        for proc in procs.values():
            proc.kill()
