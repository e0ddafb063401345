"""quickstart against a fake Databricks workspace: a local HTTP server on
127.0.0.1 that implements the few REST endpoints quickstart uses, reached by
the real ``databricks-sdk`` with ``DATABRICKS_HOST=http://127.0.0.1:<port>``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts import quickstart
from scripts.env_file import read_values

from .support import PROJECT_ROOT, SCHEMA_PATH, FakeWorkspaceServer, point_sdk_at, schema_errors
from .test_bundle import cross_check_errors

pytestmark = pytest.mark.timeout(60)

USER = "dev@example.com"


class FakeWorkspace:
    """State of the fake workspace plus a record of every request."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}  # postgres resource path -> object
        self.experiments: dict[str, dict] = {}  # id -> experiment
        self.instances: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self._next_id = 1000

    def next_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def add_project(self, project: str, branch: str = "production", database_id: str = "db-abc123") -> None:
        p = f"projects/{project}"
        b = f"{p}/branches/{branch}"
        self.objects[p] = {"name": p, "project_id": project}
        self.objects[b] = {"name": b, "branch_id": branch, "parent": p, "status": {"default": True}}
        self.objects[f"{b}/endpoints/primary"] = {
            "name": f"{b}/endpoints/primary", "parent": b,
            "status": {"endpoint_type": "ENDPOINT_TYPE_READ_WRITE"},
        }
        self.objects[f"{b}/databases/{database_id}"] = {
            "name": f"{b}/databases/{database_id}", "parent": b,
            "status": {"postgres_database": "databricks_postgres"},
        }

    def add_experiment(self, name: str) -> str:
        eid = self.next_id()
        self.experiments[eid] = {"experiment_id": eid, "name": name, "lifecycle_stage": "active"}
        return eid

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    # ------------------------------------------------------------- routing

    def handle(self, method: str, path: str, query: dict, body: dict, token: str = "") -> tuple[int, dict]:
        self.requests.append((method, path))
        if path.startswith("/api/") and token != "Bearer fake":
            return 401, {"error_code": "UNAUTHENTICATED", "message": "invalid access token"}
        if method == "GET" and path == "/.well-known/databricks-config":
            # The SDK discovers the host's OAuth settings first; PAT auth ignores them.
            return 200, {"oidc_endpoint": "http://127.0.0.1/oidc"}
        if method == "GET" and path == "/api/2.0/preview/scim/v2/Me":
            return 200, {"userName": USER, "id": "1"}
        if path.startswith("/api/2.0/mlflow/experiments/"):
            return self._experiments(method, path.rsplit("/", 1)[-1], query, body)
        if path.startswith("/api/2.0/postgres/"):
            return self._postgres(method, path.removeprefix("/api/2.0/postgres/"), query, body)
        if path.startswith("/api/2.0/database/instances"):
            return self._instances(method, path, body)
        self.unknown.append((method, path))
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"fake workspace has no {method} {path}"}

    def _experiments(self, method, action, query, body):
        if method == "GET" and action == "get-by-name":
            name = query["experiment_name"][0]
            for exp in self.experiments.values():
                if exp["name"] == name:
                    return 200, {"experiment": exp}
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"no experiment {name}"}
        if method == "GET" and action == "get":
            exp = self.experiments.get(query["experiment_id"][0])
            if exp is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}
            return 200, {"experiment": exp}
        if method == "POST" and action == "create":
            return 200, {"experiment_id": self.add_experiment(body["name"])}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": action}

    def _postgres(self, method, path, query, body):
        if method == "POST" and path == "projects":
            project = query["project_id"][0]
            self.add_project(project)
            # Already done: the SDK still polls the operation once.
            op = f"projects/{project}/operations/op-1"
            self.objects[op] = {"name": op, "done": True, "response": self.objects[f"projects/{project}"]}
            return 200, {"name": op, "done": False}
        if method != "GET":
            return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": path}
        if path in self.objects:
            return 200, self.objects[path]
        collection = path.rsplit("/", 1)[-1]
        if collection in ("branches", "endpoints", "databases"):
            items = [o for o in self.objects.values() if o.get("parent") == path.rsplit("/", 1)[0]
                     and o["name"].startswith(f"{path}/")]
            return 200, {collection: items}
        return 404, {"error_code": "NOT_FOUND", "message": f"{path} not found"}

    def _instances(self, method, path, body):
        if method == "POST":
            self.instances[body["name"]] = {"name": body["name"], "capacity": body.get("capacity"), "state": "AVAILABLE"}
            return 200, self.instances[body["name"]]
        name = path.rsplit("/", 1)[-1]
        if name in self.instances:
            return 200, self.instances[name]
        return 404, {"error_code": "NOT_FOUND", "message": f"instance {name} not found"}


@pytest.fixture
def workspace(monkeypatch, tmp_path):
    """A running fake workspace; the SDK is pointed at it with a fake token."""
    state = FakeWorkspace()
    with FakeWorkspaceServer(state.handle) as server:
        point_sdk_at(monkeypatch, server.host, tmp_path)
        state.host = server.host
        yield state


EXAMPLE_ENV = """# Example settings (a stand-in for the project's .env.example)
DATABRICKS_CONFIG_PROFILE=
MLFLOW_EXPERIMENT_ID=
LAKEBASE_AUTOSCALING_ENDPOINT=
LAKEBASE_INSTANCE_NAME=
AGENT_FRAMEWORK=openai
"""


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the project's files that quickstart edits."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "databricks.yml", root / "databricks.yml")
    (root / ".env.example").write_text(EXAMPLE_ENV)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(root.iterdir()) if p.is_file()}


def run_quickstart(root: Path, *args: str) -> int:
    return quickstart.main(["--project-dir", str(root), *args])


def assert_valid_bundle(root: Path) -> dict:
    bundle = yaml.safe_load((root / "databricks.yml").read_text())
    if SCHEMA_PATH.is_file():
        assert schema_errors(bundle) == []
    assert cross_check_errors(bundle, root=PROJECT_ROOT) == []
    return bundle


def test_creates_experiment_and_project_then_second_run_changes_nothing(workspace, project, capsys):
    assert run_quickstart(project, "--host", workspace.host, "--lakebase-project", "agent-db") == 0
    out = capsys.readouterr().out
    assert "created experiment /Users/dev@example.com/long-running-agent" in out
    assert "Lakebase project agent-db (created)" in out

    env = read_values((project / ".env").read_text())
    experiment_id = next(iter(workspace.experiments))
    assert env["MLFLOW_EXPERIMENT_ID"] == experiment_id
    assert env["DATABRICKS_HOST"] == workspace.host
    assert "DATABRICKS_CONFIG_PROFILE" not in env or not env["DATABRICKS_CONFIG_PROFILE"]
    assert env["LAKEBASE_AUTOSCALING_PROJECT"] == "agent-db"
    assert env["LAKEBASE_AUTOSCALING_BRANCH"] == "production"
    assert env["AGENT_FRAMEWORK"] == "openai"  # the rest of .env.example is kept
    assert (project / ".env").read_text().startswith((project / ".env.example").read_text().splitlines()[0])

    bundle = assert_valid_bundle(project)
    variables = bundle["variables"]
    assert variables["experiment_id"]["default"] == experiment_id
    assert variables["lakebase_branch"]["default"] == "projects/agent-db/branches/production"
    assert variables["lakebase_database"]["default"] == "projects/agent-db/branches/production/databases/db-abc123"
    for app in bundle["resources"]["apps"].values():  # both apps use the choices
        postgres = next(r["postgres"] for r in app["resources"] if "postgres" in r)
        assert postgres["branch"] == "${var.lakebase_branch}"
    # Comments of the hand-written file survive.
    assert "# One bundle, two Databricks Apps" in (project / "databricks.yml").read_text()

    before, writes = snapshot(project), len(workspace.writes)
    assert run_quickstart(project) == 0  # everything from .env now
    assert snapshot(project) == before
    assert len(workspace.writes) == writes, workspace.writes[writes:]
    out = capsys.readouterr().out
    assert ".env unchanged" in out and "databricks.yml unchanged" in out

    # The same explicit options again: still nothing created or changed.
    assert run_quickstart(project, "--host", workspace.host, "--lakebase-project", "agent-db") == 0
    assert snapshot(project) == before
    assert len(workspace.writes) == writes
    assert workspace.unknown == []


def test_works_with_the_projects_env_example(workspace, project):
    example = PROJECT_ROOT / ".env.example"
    if not example.exists():
        pytest.skip(".env.example is not in the repository yet")
    shutil.copy(example, project / ".env.example")
    workspace.add_project("agent-db")
    assert run_quickstart(project, "--lakebase-project", "agent-db") == 0
    env = read_values((project / ".env").read_text())
    # Every setting the example explains is still there, with quickstart's choices filled in.
    assert set(read_values(example.read_text())) - {"DATABASE_URL"} <= set(env) | {
        "LAKEBASE_AUTOSCALING_ENDPOINT", "LAKEBASE_INSTANCE_NAME"}
    assert env["LAKEBASE_AUTOSCALING_PROJECT"] == "agent-db"
    before = snapshot(project)
    assert run_quickstart(project) == 0
    assert snapshot(project) == before


def test_picks_existing_experiment_and_endpoint(workspace, project, capsys):
    workspace.add_project("shared", branch="dev", database_id="db-1")
    eid = workspace.add_experiment("/Shared/agents")
    endpoint = "projects/shared/branches/dev/endpoints/primary"
    assert run_quickstart(project, "--experiment-name", "/Shared/agents", "--lakebase-endpoint", endpoint) == 0
    assert workspace.writes == []  # picked, nothing created
    env = read_values((project / ".env").read_text())
    assert env["MLFLOW_EXPERIMENT_ID"] == eid
    assert env["LAKEBASE_AUTOSCALING_ENDPOINT"] == endpoint
    bundle = assert_valid_bundle(project)
    assert bundle["variables"]["lakebase_database"]["default"] == "projects/shared/branches/dev/databases/db-1"

    before = snapshot(project)
    assert run_quickstart(project) == 0
    assert snapshot(project) == before


def test_provisioned_instance_rewrites_both_apps(workspace, project):
    eid = workspace.add_experiment("x")
    assert run_quickstart(project, "--experiment-id", eid, "--lakebase-instance", "agent-pg", "--create-instance") == 0
    assert workspace.instances["agent-pg"]["capacity"] == "CU_1"
    env = read_values((project / ".env").read_text())
    assert env["LAKEBASE_INSTANCE_NAME"] == "agent-pg"
    bundle = assert_valid_bundle(project)
    assert bundle["variables"]["lakebase_instance_name"]["default"] == "agent-pg"
    assert "lakebase_branch" not in bundle["variables"]
    for app in bundle["resources"]["apps"].values():
        names = {e["name"]: e for e in app["config"]["env"]}
        assert names["LAKEBASE_INSTANCE_NAME"]["value"] == "${var.lakebase_instance_name}"
        assert "LAKEBASE_AUTOSCALING_ENDPOINT" not in names
        database = next(r["database"] for r in app["resources"] if "database" in r)
        assert database == {"instance_name": "${var.lakebase_instance_name}", "database_name": "databricks_postgres",
                            "permission": "CAN_CONNECT_AND_CREATE"}

    before, writes = snapshot(project), len(workspace.writes)
    assert run_quickstart(project) == 0
    assert snapshot(project) == before and len(workspace.writes) == writes

    # Switching back to autoscaling comments out the instance in .env.
    workspace.add_project("agent-db")
    assert run_quickstart(project, "--lakebase-project", "agent-db") == 0
    text = (project / ".env").read_text()
    assert "# LAKEBASE_INSTANCE_NAME=agent-pg" in text
    assert "LAKEBASE_INSTANCE_NAME" not in read_values(text)
    bundle = assert_valid_bundle(project)
    assert "lakebase_instance_name" not in bundle["variables"]


def test_clear_errors(workspace, project, capsys):
    assert run_quickstart(project) == 1
    assert "choose a Lakebase database" in capsys.readouterr().err
    assert run_quickstart(project, "--experiment-id", "999", "--lakebase-project", "p") == 1
    assert "experiment 999 does not exist" in capsys.readouterr().err
    assert run_quickstart(project, "--lakebase-endpoint", "projects/x") == 1
    assert "not an endpoint path" in capsys.readouterr().err
    assert run_quickstart(project, "--lakebase-instance", "nope") == 1
    assert "--create-instance" in capsys.readouterr().err
    workspace.add_project("p")
    assert run_quickstart(project, "--lakebase-project", "p", "--lakebase-branch", "nope") == 1
    assert "has no branch 'nope' (branches: production)" in capsys.readouterr().err
    assert run_quickstart(project.parent, "--lakebase-project", "p") == 1
    assert "no databricks.yml" in capsys.readouterr().err
    assert not (project / ".env").exists()  # nothing written on failure


def test_rejected_credentials_are_a_clear_error(workspace, project, monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_TOKEN", "expired")
    assert run_quickstart(project, "--lakebase-project", "p") == 1
    err = capsys.readouterr().err
    assert "cannot reach the workspace" in err and "databricks auth login" in err
    assert not (project / ".env").exists()


def test_help():
    out = subprocess.run([sys.executable, "-m", "scripts.quickstart", "--help"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for option in ("--profile", "--lakebase-project", "--lakebase-instance", "--experiment-id"):
        assert option in out.stdout
