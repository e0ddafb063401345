"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh
schema per test so tests never see each other's rows (nothing to reset), and
server processes running the synthetic agent.

Tiers. ``uv run pytest`` runs the fast tier: tests that need no process of
their own (units, the in-process engine on the session's PostgreSQL, and the
one shared server). ``uv run pytest --full`` (what CI runs) runs everything.
The tier follows from the fixtures a test uses, directly or through other
fixtures: every fixture (or test) that starts processes of its own (a server,
a browser, Node, a command-line tool) requests ``spawns``, and a test that
uses ``spawns`` (or is marked ``slow``) runs only in the full suite. The one
shared server is the exception: it is started once for the fast tier.
"""

from __future__ import annotations

import importlib
import itertools
import json
import sys
import uuid

import httpx
import psycopg
import pytest

from agent_server.agents import FRAMEWORKS
from agent_server.long_running.storage.embedded import EmbeddedPostgres
from tests.support import ServerProcess, python_argv

_server_numbers = itertools.count()

def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="run the whole suite (as CI does), not only the fast tier")


def pytest_collection_modifyitems(config, items):
    full_only = [item for item in items if not _fast(item)]
    for item in full_only:
        item.add_marker(pytest.mark.full_suite)
    if config.getoption("--full"):
        return
    config.hook.pytest_deselected(items=full_only)
    items[:] = [item for item in items if _fast(item)]


def _fast(item) -> bool:
    """No ``slow`` marker, and no fixture (direct or inherited) that starts processes of its own."""
    return item.get_closest_marker("slow") is None and "spawns" not in getattr(item, "fixturenames", ())


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory) -> EmbeddedPostgres:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def pg_url(embedded_pg) -> str:
    """URL of the session's embedded PostgreSQL (a Unix socket, no TCP)."""
    return embedded_pg.url


@pytest.fixture
def db_schema() -> str:
    """A schema name no other test uses."""
    return f"t_{uuid.uuid4().hex[:12]}"


def _start_synthetic(pg_url: str, log_dir, schema: str, workers: int = 1, env: dict | None = None,
                     **kwargs) -> ServerProcess:
    n = next(_server_numbers)
    kwargs = {"database_url": pg_url, "db_schema": schema, **kwargs}
    server_env = {
        "SYNTHETIC_SERVER_KWARGS": json.dumps(kwargs),
        "MLFLOW_TRACKING_URI": f"sqlite:///{log_dir}/mlflow-{n}.db",
        **(env or {}),
    }
    argv = python_argv("-m", "harness.synthetic_server", "--workers", str(workers))
    return ServerProcess(argv, env=server_env, log_path=log_dir / f"server-{n}.log")


@pytest.fixture(scope="session")
def spawns():
    """Requested by every fixture and test that starts processes of its own, which puts their
    tests in the full suite. ``spawns(process)`` also has a ``subprocess.Popen`` (or anything
    with ``kill()``) killed at the session's end should its owner not have stopped it."""
    started = []
    yield started.append
    for process in started:
        try:
            process.kill()
        except Exception:  # already gone
            pass


@pytest.fixture
def start_server(pg_url, tmp_path, spawns):
    """Factory: ``start_server(schema, workers=1, wait=True, **constructor_kwargs)`` -> a ServerProcess
    (healthy, or just launched with ``wait=False``)."""
    servers: list[ServerProcess] = []

    def start(schema: str, workers: int = 1, env: dict | None = None, wait: bool = True,
              **kwargs) -> ServerProcess:
        server = _start_synthetic(pg_url, tmp_path, schema, workers, env, **kwargs)
        servers.append(server)
        return server.start() if wait else server.launch()

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(scope="session")
def shared_schema() -> str:
    return f"shared_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def shared_server(pg_url, tmp_path_factory, shared_schema) -> ServerProcess:
    """One synthetic-agent server for the many tests that need nothing special."""
    server = _start_synthetic(pg_url, tmp_path_factory.mktemp("shared"), shared_schema,
                              heartbeat_interval_seconds=1.0, heartbeat_stale_threshold_seconds=5.0)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def client(shared_server) -> httpx.Client:
    with httpx.Client(base_url=shared_server.base_url, timeout=30) as c:
        yield c


@pytest.fixture
def sql(pg_url):
    """Run SQL on the test database directly (to check what is stored)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        def run(query: str, params=None) -> list[tuple]:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []
        yield run


def pytest_terminal_summary(terminalreporter):
    """Print the reliability figures of the fault and security tests that ran (harness/chaos.py)."""
    from harness import chaos

    if chaos.RECORDED:
        terminalreporter.write_sep("-", "reliability figures (harness/chaos.py)")
        for line in chaos.summary().splitlines():
            terminalreporter.write_line(line)


@pytest.fixture(params=sorted(FRAMEWORKS))
def agent(request, monkeypatch, tmp_path_factory):
    """A freshly imported variant module whose handlers are registered in this process (MLflow allows
    one registration per process: each test imports its variant afresh)."""
    import mlflow.genai.agent_server.server as registry

    monkeypatch.setenv("LLM_ENDPOINT_NAME", "")
    monkeypatch.setenv("OFFLINE_MODEL_TOKEN_DELAY_SECONDS", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path_factory.getbasetemp()}/tool-calls-mlflow.db")
    monkeypatch.setattr(registry, "_invoke_function", None)
    monkeypatch.setattr(registry, "_stream_function", None)
    module_name = FRAMEWORKS[request.param]
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    yield importlib.import_module(module_name)
    sys.modules.pop(module_name, None)


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory, spawns) -> ServerProcess:
    """``tests/mcp_server.py``: real MCP servers over streamable HTTP (``/calc/mcp``, ``/identity/mcp``)."""
    proc = ServerProcess(python_argv("tests/mcp_server.py"),
                         log_path=tmp_path_factory.mktemp("mcp") / "mcp.log")
    proc.start(timeout=120)
    yield proc
    proc.kill()
