""".github/workflows/deploy.yml, checked offline: against the GitHub workflow
JSON schema that the ``check-jsonschema`` package ships (SchemaStore's), and
against the bundle it deploys. The workflow itself never runs here."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from .support import PROJECT_ROOT

WORKFLOW_PATH = PROJECT_ROOT / ".github/workflows/deploy.yml"
SECRETS = {"DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"}


def check_schema(path) -> subprocess.CompletedProcess:
    """The check-jsonschema CLI with its built-in (vendored, offline) workflow schema."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True, text=True, timeout=60,
    )


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW_PATH.read_text())
    data["on"] = data.pop(True)  # YAML 1.1 reads the key `on` as true
    return data


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_matches_the_github_workflow_schema(tmp_path):
    result = check_schema(WORKFLOW_PATH)
    assert result.returncode == 0, result.stdout + result.stderr

    # The check can fail: a job without runs-on, a step with an unknown key.
    broken = WORKFLOW_PATH.read_text().replace("    runs-on: ubuntu-latest\n", "", 1)
    broken = broken.replace("      - uses: actions/checkout@v4\n", "      - uses: actions/checkout@v4\n        with_: {}\n", 1)
    (tmp_path / "broken.yml").write_text(broken)
    result = check_schema(tmp_path / "broken.yml")
    assert result.returncode == 1 and "runs-on" in result.stdout + result.stderr


def test_authenticates_as_a_service_principal_from_secrets(workflow):
    text = WORKFLOW_PATH.read_text()
    assert set(re.findall(r"\$\{\{\s*secrets\.(\w+)\s*\}\}", text)) == SECRETS
    env = workflow["env"]
    assert {name: env[name] for name in SECRETS} == {name: f"${{{{ secrets.{name} }}}}" for name in SECRETS}
    assert env["DATABRICKS_AUTH_TYPE"] == "oauth-m2m"
    assert workflow["permissions"] == {"contents": "read"}  # nothing else of the repository


def test_validates_then_deploys_every_app_of_the_bundle(workflow):
    bundle = yaml.safe_load((PROJECT_ROOT / "databricks.yml").read_text())
    targets = workflow["on"]["workflow_dispatch"]["inputs"]["target"]
    assert set(targets["options"]) <= set(bundle["targets"]) and targets["default"] in targets["options"]

    jobs = workflow["jobs"]
    assert jobs["deploy"]["needs"] == "validate"
    for job in jobs.values():
        uses = [step["uses"] for step in job["steps"] if "uses" in step]
        assert "actions/checkout@v4" in uses
        setup = [u for u in uses if u.startswith("databricks/setup-cli@")]
        assert len(setup) == 1 and re.fullmatch(r"databricks/setup-cli@v\d+\.\d+\.\d+", setup[0])  # a release, not main

    def commands(job):
        return [step["run"] for step in jobs[job]["steps"] if "run" in step]

    assert 'databricks bundle validate --target "$TARGET"' in commands("validate")
    deploy = commands("deploy")
    assert deploy[0] == 'databricks bundle deploy --target "$TARGET"'
    # Every app is started after the deploy, or it keeps serving the old code.
    assert deploy[1:] == [f'databricks bundle run {key} --target "$TARGET"' for key in bundle["resources"]["apps"]]
    for run in (s["run"] for s in steps(workflow) if "run" in s):
        assert run.startswith("databricks "), run  # nothing but the CLI runs in CI
