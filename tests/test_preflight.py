"""preflight in offline mode: a real server process on 127.0.0.1 with the
local Postgres (``DATABASE_URL``) and no Databricks credentials. The agent is
the test suite's synthetic one, since the real agents need a model endpoint."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .support import PROJECT_ROOT, ServerProcess, python_argv

pytestmark = pytest.mark.timeout(240)

SYNTHETIC = shlex.join(python_argv("-m", "harness.synthetic_server"))
# Slow enough that the cancel arrives while the response is still running.
SLOW = json.dumps({"deltas": 200, "pause": 0.05})
CHECK_NAMES = ("server starts", "health", "standard", "background + poll", "background + stream",
               "stream resume (starting_after)", "cancel")


def offline_env(pg_url: str, schema: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABRICKS_", "LAKEBASE_", "MLFLOW_", "PREFLIGHT_"))}
    env |= {
        "DATABASE_URL": pg_url,
        "AGENT_SERVER_DB_SCHEMA": schema,
        "SYNTHETIC_SERVER_KWARGS": json.dumps({"database_url": pg_url, "db_schema": schema}),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }
    return env


def run_preflight(env: dict[str, str], *args: str, timeout: float = 200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.preflight", "--timeout", "30", "--startup-timeout", "60", *args],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def result_lines(stdout: str) -> dict[str, str]:
    lines = {}
    for line in stdout.splitlines():
        status, _, rest = line.partition("  ")
        if status in ("PASS", "FAIL"):
            name = next((n for n in CHECK_NAMES if rest.startswith(n)), rest)
            lines[name] = status
    return lines


def test_all_checks_pass_against_a_working_server(pg_url, db_schema, tmp_path, spawns):
    out = run_preflight(offline_env(pg_url, db_schema, tmp_path), "--command", SYNTHETIC,
                        "--cancel-custom-inputs", SLOW, "--log-file", str(tmp_path / "server.log"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert result_lines(out.stdout) == {name: "PASS" for name in CHECK_NAMES}, out.stdout
    assert "cancelled; cancelling again answered cancelled" in out.stdout


def test_checks_a_running_server_by_url(pg_url, db_schema, tmp_path, spawns):
    env = offline_env(pg_url, db_schema, tmp_path)
    with ServerProcess(python_argv("-m", "harness.synthetic_server"), env=env, log_path=tmp_path / "s.log") as server:
        out = run_preflight(env, "--url", server.base_url, "--cancel-custom-inputs", SLOW)
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(result_lines(out.stdout)) == set(CHECK_NAMES) - {"server starts"}


def test_a_server_that_does_not_start_fails_with_its_log(tmp_path, pg_url, db_schema, spawns):
    crash = shlex.join(python_argv("-c", "import sys; print('boom: no agent configured'); sys.exit(3)"))
    out = run_preflight(offline_env(pg_url, db_schema, tmp_path), "--command", crash)
    assert out.returncode == 1
    assert re.search(r"^FAIL  server starts +the server exited with code 3$", out.stdout, re.MULTILINE), out.stdout
    assert "boom: no agent configured" in out.stderr


def test_protocol_violations_are_reported_per_check(tmp_path, pg_url, db_schema, spawns):
    """A server that is healthy but implements nothing: every request check fails, none crashes."""
    stub = tmp_path / "stub.py"
    stub.write_text(
        "import sys, json\n"
        "from http.server import BaseHTTPRequestHandler, HTTPServer\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        ok = self.path == '/health'\n"
        "        body = json.dumps({'status': 'healthy'} if ok else {'error': 'nope'}).encode()\n"
        "        self.send_response(200 if ok else 404); self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers(); self.wfile.write(body)\n"
        "    do_POST = do_GET\n"
        "    def log_message(self, *a): pass\n"
        "port = int(sys.argv[sys.argv.index('--port') + 1])\n"
        "HTTPServer(('127.0.0.1', port), H).serve_forever()\n"
    )
    out = run_preflight(offline_env(pg_url, db_schema, tmp_path), "--command", shlex.join(python_argv(str(stub))))
    assert out.returncode == 1
    results = result_lines(out.stdout)
    assert results["server starts"] == results["health"] == "PASS"
    for name in CHECK_NAMES[2:]:
        assert results[name] == "FAIL", out.stdout
    assert "HTTP 404" in out.stdout


def test_help():
    out = subprocess.run([sys.executable, "-m", "scripts.preflight", "--help"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "--url" in out.stdout and "--command" in out.stdout


@pytest.mark.parametrize("framework", ["openai", "langgraph"])
def test_real_start_server_passes_offline(framework, pg_url, db_schema, tmp_path, spawns):
    """The default command (start-server) with the offline model: no Databricks at all."""
    if not (PROJECT_ROOT / "agent_server" / "start_server.py").exists():
        pytest.skip("agent_server/start_server.py is not there yet")
    env = offline_env(pg_url, db_schema, tmp_path)
    env |= {"AGENT_FRAMEWORK": framework, "AGENT_SERVER_ENV_FILE": "", "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0"}
    env.pop("LLM_ENDPOINT_NAME", None)
    out = run_preflight(env, "--log-file", str(tmp_path / "server.log"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert result_lines(out.stdout) == {name: "PASS" for name in CHECK_NAMES}, out.stdout
    assert "cancelled; cancelling again answered cancelled" in out.stdout
