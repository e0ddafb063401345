"""The official JavaScript clients against a real server: the ``openai`` npm package
resuming a dropped background stream, and the Vercel AI SDK's OpenAI Responses
provider streaming text (scripts in tests/node/).

Needs ``node`` and ``npm ci --prefix tests/node``: skipped locally without them,
a failure under CI=true (where .ci/run installs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, agent_server_process

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        missing = "node is not installed"
    elif not (NODE_DIR / "node_modules" / "openai").is_dir():
        missing = "tests/node/node_modules is missing: run `npm ci --prefix tests/node`"
    else:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing} (required under CI=true; .ci/run installs it)")
    pytest.skip(missing)


@pytest.fixture(scope="module")
def server(node, pg_url, tmp_path_factory, spawns) -> ServerProcess:
    proc = agent_server_process("openai", tmp_path_factory.mktemp("node-clients"), {
        "DATABASE_URL": pg_url,
        "AGENT_SERVER_DB_SCHEMA": f"node_{uuid.uuid4().hex[:8]}",
        "LLM_ENDPOINT_NAME": "",
        "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0.002",
        "AGENT_FRAMEWORK": "",
    })
    proc.start(timeout=120)
    proc.wait_until_healthy(60, database=True)
    yield proc
    proc.kill()


def run_node(node: str, script: str, server: ServerProcess, **env: str) -> dict:
    """Run ``tests/node/<script>``; its last stdout line is a JSON summary."""
    done = subprocess.run([node, script], cwd=NODE_DIR, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "AGENT_SERVER_URL": server.base_url, **env})
    assert done.returncode == 0, f"{script} failed:\n{done.stderr[-4000:]}\n{done.stdout[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_openai_npm_client_resumes_a_dropped_background_stream(node, server):
    seen = run_node(node, "resume_background_stream.mjs", server, DROP_AFTER="5")
    assert seen["droppedAfter"] == 4 and seen["events"] > 5
    stored = httpx.get(f"{server.base_url}/responses/{seen['responseId']}", timeout=30).json()
    message = [item for item in stored["output"] if item["type"] == "message"][-1]
    assert message["content"][0]["text"] == seen["text"]
    assert "research tool reported" in seen["text"]


def test_vercel_ai_sdk_stream_text(node, server):
    seen = run_node(node, "ai_sdk_stream_text.mjs", server, AGENT_INPUT="hello there")
    assert seen["text"].startswith("Hello! I am the offline demo model") and '"hello there"' in seen["text"]
    assert seen["finishReason"] == "stop"
