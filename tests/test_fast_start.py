"""A fast start: MLflow and the agent SDKs are imported after the server
answers, and the first request waits for them rather than failing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import openai
import pytest

from agent_server.agents import FRAMEWORKS
from tests.support import PROJECT_ROOT, ServerProcess, agent_server_process, free_port, stream_frames

# What takes seconds to import: none of it before the server answers /health.
SLOW_MODULES = ("mlflow", "pandas", "agents", "langgraph", "langchain_core", "databricks_openai",
                "databricks_langchain", "databricks_ai_bridge")


def test_the_placeholder_id_is_the_sdks():
    from agents.models.fake_id import FAKE_RESPONSES_ID

    from agent_server.utils import FAKE_RESPONSES_ID as ours

    assert ours == FAKE_RESPONSES_ID


@pytest.mark.parametrize("variant", sorted(FRAMEWORKS))
def test_importing_the_server_imports_neither_mlflow_nor_an_agent_sdk(variant):
    code = ("import sys; import agent_server.start_server as s; "
            f"import json; print(json.dumps([m for m in {SLOW_MODULES!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code, "--agent", variant], cwd=PROJECT_ROOT, check=True,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "AGENT_SERVER_ENV_FILE": "", "LLM_ENDPOINT_NAME": ""})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_first_request_right_after_health_waits_for_the_agent(pg_url, tmp_path, spawns):
    server = agent_server_process("openai", tmp_path, {
        "DATABASE_URL": pg_url, "AGENT_SERVER_DB_SCHEMA": f"fast_{uuid.uuid4().hex[:8]}",
        "LLM_ENDPOINT_NAME": "", "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0", "AGENT_FRAMEWORK": "",
    })
    with server as proc, openai.OpenAI(base_url=proc.base_url, api_key="unused", timeout=120,
                                       max_retries=0) as client:
        assert proc.health()["agent"] in ("importing", "ready")
        background = client.responses.create(model="agent", input="What time is it?", background=True)
        standard = client.responses.create(model="agent", input="hello")
        assert standard.status == "completed" and "offline demo model" in standard.output_text
        assert proc.health()["agent"] == "ready"
        for _ in range(600):
            background = client.responses.retrieve(background.id)
            if background.status not in ("queued", "in_progress"):
                break
            time.sleep(0.1)
        assert background.status == "completed"
        assert any(item.type == "function_call" and item.name == "get_current_time" for item in background.output)


def test_a_server_whose_agent_fails_to_import_says_why_and_stops(pg_url, tmp_path, spawns):
    code = (
        "import uvicorn, harness.synthetic_agent\n"
        "from agent_server.long_running import LongRunningAgentServer\n"
        f"server = LongRunningAgentServer('ResponsesAgent', database_url={pg_url!r}, db_schema='fast_broken')\n"
        "def load():\n"
        "    raise ImportError('a typo in the agent file')\n"
        "server.import_handlers_after_start(load)\n"
        f"uvicorn.run(server.app, host='127.0.0.1', port={free_port()})\n"
    )
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"})
        try:
            proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert "Importing the agent failed; stopping the server" in text
    assert "ImportError: a typo in the agent file" in text


def test_while_the_agent_imports_stored_responses_are_served_and_new_runs_wait(pg_url, tmp_path, spawns):
    """/health, accepting, retrieving and cancelling need neither MLflow's tracing nor the agent:
    they answer while the agent's import is held; the accepted run starts once it is done."""
    release = tmp_path / "release-the-import"
    code = (
        "import pathlib, sys, time, uvicorn\n"
        "from agent_server.long_running import LongRunningAgentServer\n"
        f"server = LongRunningAgentServer('ResponsesAgent', database_url={pg_url!r}, "
        f"db_schema='fast_{uuid.uuid4().hex[:8]}')\n"
        "def load():\n"
        f"    while not pathlib.Path({str(release)!r}).exists():\n"
        "        time.sleep(0.05)\n"
        "    import harness.synthetic_agent\n"
        "server.import_handlers_after_start(load)\n"
        "uvicorn.run(server.app, host='127.0.0.1', port=int(sys.argv[sys.argv.index('--port') + 1]))\n"
    )
    server = ServerProcess([sys.executable, "-c", code], log_path=tmp_path / "server.log",
                           env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"})
    with server as proc, httpx.Client(base_url=proc.base_url, timeout=60) as client:
        assert proc.wait_until_healthy(database=True).health()["agent"] == "importing"
        body = {"input": "hi", "custom_inputs": {"deltas": 2}}
        kept = client.post("/responses", json={**body, "background": True}).json()
        dropped = client.post("/responses", json={**body, "background": True}).json()
        assert kept["status"] in ("queued", "in_progress") and dropped["status"] in ("queued", "in_progress")
        assert client.get(f"/responses/{kept['id']}").json()["status"] in ("queued", "in_progress")
        assert client.post(f"/responses/{dropped['id']}/cancel").json()["status"] == "cancelled"
        assert proc.health()["agent"] == "importing"  # all of the above answered without the agent

        release.touch()
        frames = stream_frames(client, "GET", f"/responses/{kept['id']}", params={"stream": "true"})
        assert frames[-1] == "[DONE]" and frames[-2]["type"] == "response.completed"
        assert "".join(f["delta"] for f in frames[:-1] if f["type"] == "response.output_text.delta") \
            == "delta-0 delta-1 "
        assert proc.health()["agent"] == "ready"
        assert client.get(f"/responses/{dropped['id']}").json()["status"] == "cancelled"


@pytest.mark.parametrize("variant", sorted(FRAMEWORKS))
def test_runs_started_while_tracing_warms_up_leave_no_trace_and_later_runs_one_each(variant, pg_url, tmp_path,
                                                                                    spawns):
    """The engine opens no span for a run that starts before MLflow's tracing is warm, and the
    agent SDK's autologging stays quiet for it too (its first span would build the tracer inside
    the event loop). So the traces in the store are exactly those of the runs marked traced."""
    import mlflow
    import psycopg

    schema = f"fast_{uuid.uuid4().hex[:8]}"
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    server = agent_server_process(variant, tmp_path, {
        "DATABASE_URL": pg_url, "AGENT_SERVER_DB_SCHEMA": schema, "MLFLOW_TRACKING_URI": tracking_uri,
        "LLM_ENDPOINT_NAME": "", "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0", "AGENT_FRAMEWORK": "",
    })
    answers = []
    with server as proc, openai.OpenAI(base_url=proc.base_url, api_key="unused", timeout=120,
                                       max_retries=0) as client:
        while proc.health()["agent"] != "ready":
            time.sleep(0.02)
        answers.append(client.responses.create(model="agent", input="hello"))  # most likely still warming up
        while proc.health()["tracing"] != "ready":
            time.sleep(0.05)
        answers += [client.responses.create(model="agent", input="hello") for _ in range(2)]
        assert all(a.status == "completed" and "offline demo model" in a.output_text for a in answers)
        with psycopg.connect(pg_url) as conn:
            traced = {row[0] for row in conn.execute(
                f"SELECT trace_id FROM {schema}.responses WHERE response_id = ANY(%s) AND trace_id IS NOT NULL",
                ([a.id for a in answers],))}
        assert len(traced) >= 2  # the runs after the warm-up
        store = mlflow.MlflowClient(tracking_uri)
        stored: set[str] = set()
        for _ in range(300):  # MLflow exports traces in a thread of its own
            stored = {t.info.trace_id for t in store.search_traces(locations=["0"], max_results=100)}
            if stored >= traced:
                break
            time.sleep(0.1)
    assert stored == traced
