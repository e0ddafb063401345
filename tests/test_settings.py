"""Invalid settings fail at construction with a message that says which and why."""

from __future__ import annotations

import pytest

from agent_server.long_running import LongRunningAgentServer
from agent_server.long_running.storage.database import DatabaseUnavailable, resolve_target
from agent_server.long_running.storage.lakebase_config import LakebaseConfig


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"task_timeout_seconds": 0}, "task_timeout_seconds must be a positive number"),
        ({"poll_interval_seconds": -1}, "poll_interval_seconds must be a positive number"),
        ({"db_statement_timeout_ms": 0}, "db_statement_timeout_ms must be a positive number"),
        ({"heartbeat_interval_seconds": 0}, "heartbeat_interval_seconds must be a positive number"),
        ({"max_concurrent_tasks": 0}, "max_concurrent_tasks must be a positive number"),
        ({"cleanup_timeout_seconds": 0}, "cleanup_timeout_seconds must be a positive number"),
        ({"heartbeat_interval_seconds": 5, "heartbeat_stale_threshold_seconds": 5},
         "heartbeat_stale_threshold_seconds (5) must be greater than heartbeat_interval_seconds (5)"),
        ({"db_schema": "Robert'); DROP TABLE students;--"}, "db_schema must be a lowercase SQL identifier"),
        ({"db_schema": "1abc"}, "db_schema must be a lowercase SQL identifier"),
        ({"db_schema": "a" * 41}, "db_schema must be a lowercase SQL identifier"),
        ({"db_pool_max_size": 1}, "db_pool_max_size must be an integer of at least 2"),
    ],
)
def test_invalid_settings_raise_value_error(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        LongRunningAgentServer("ResponsesAgent", **kwargs)
    assert fragment in str(info.value)


def test_only_responses_agent_is_supported():
    with pytest.raises(ValueError, match="only supports agent_type 'ResponsesAgent', got 'ChatAgent'"):
        LongRunningAgentServer("ChatAgent")


def test_anchor_constructor_call_is_accepted():
    server = LongRunningAgentServer(
        "ResponsesAgent", enable_chat_proxy=False, db_instance_name=None, db_autoscaling_endpoint=None,
        db_project=None, db_branch=None, task_timeout_seconds=3600.0, poll_interval_seconds=1.0,
        db_statement_timeout_ms=5000, cleanup_timeout_seconds=7.0, heartbeat_interval_seconds=3.0,
        heartbeat_stale_threshold_seconds=10.0,
    )
    paths = {route.path for route in server.app.routes}
    assert {"/responses", "/invocations", "/responses/{response_id}", "/responses/{response_id}/cancel",
            "/health", "/agent/info"} <= paths


@pytest.mark.parametrize("app_name", [None, "my-agent-app"])
def test_agent_info_answers_as_mlflows_agent_server(monkeypatch, app_name):
    """Our server is not MLflow's AgentServer subclass (that would import MLflow before it can
    answer): its /agent/info must still say exactly what MLflow's says."""
    from fastapi.testclient import TestClient
    from mlflow.genai.agent_server import AgentServer

    if app_name is None:
        monkeypatch.delenv("DATABRICKS_APP_NAME", raising=False)
    else:
        monkeypatch.setenv("DATABRICKS_APP_NAME", app_name)
    ours = LongRunningAgentServer("ResponsesAgent", database_url="postgresql://unused/db").app
    theirs = AgentServer("ResponsesAgent").app
    # (No lifespan: /agent/info needs neither the database nor the agent.)
    assert TestClient(ours).get("/agent/info").json() == TestClient(theirs).get("/agent/info").json()


@pytest.mark.parametrize(
    "env,backend,fragment",
    [
        ({"DATABASE_URL": "postgresql://u:secret@db.example:5433/app"}, "url", "db.example:5433/app"),
        ({"LAKEBASE_AUTOSCALING_ENDPOINT": "ep", "LAKEBASE_INSTANCE_NAME": "i"}, "lakebase", "endpoint ep"),
        ({"LAKEBASE_AUTOSCALING_PROJECT": "p", "LAKEBASE_AUTOSCALING_BRANCH": "b",
          "LAKEBASE_INSTANCE_NAME": "i"}, "lakebase", "project p branch b"),
        ({"LAKEBASE_INSTANCE_NAME": "i"}, "lakebase", "instance i"),
        ({}, "embedded", "embedded PostgreSQL"),
    ],
)
def test_backend_is_chosen_by_priority(env, backend, fragment):
    target = resolve_target(database_url=None, lakebase=None, environ=env)
    assert target.backend == backend
    assert fragment in target.describe()
    assert "secret" not in target.describe()


def test_explicit_url_beats_environment():
    target = resolve_target(database_url="postgresql:///x", lakebase=LakebaseConfig(instance_name="i"),
                            environ={"LAKEBASE_INSTANCE_NAME": "j"})
    assert target.backend == "url"


@pytest.mark.parametrize(
    "env,fragment",
    [
        ({"LAKEBASE_AUTOSCALING_PROJECT": "p"}, "LAKEBASE_AUTOSCALING_BRANCH is missing"),
        ({"LAKEBASE_AUTOSCALING_BRANCH": "b"}, "LAKEBASE_AUTOSCALING_PROJECT is missing"),
        ({"DATABRICKS_APP_NAME": "my-app"}, "No Lakebase database configured for Databricks App 'my-app'"),
    ],
)
def test_unusable_database_configuration_says_why(env, fragment):
    with pytest.raises(DatabaseUnavailable, match=fragment):
        resolve_target(database_url=None, lakebase=None, environ=env)


def test_constructor_lakebase_arguments_follow_the_same_priority_and_name_themselves():
    target = resolve_target(database_url=None, environ={"LAKEBASE_INSTANCE_NAME": "from-env"},
                            lakebase=LakebaseConfig(instance_name="i", autoscaling_project="p", autoscaling_branch="b"))
    assert target.lakebase == LakebaseConfig(autoscaling_project="p", autoscaling_branch="b")
    with pytest.raises(DatabaseUnavailable, match="db_project is set \\('p'\\) but db_branch is missing"):
        resolve_target(database_url=None, lakebase=LakebaseConfig(autoscaling_project="p"), environ={})

