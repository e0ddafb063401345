"""Offline checks of databricks.yml: we cannot reach a workspace from CI, so
the bundle is checked against the Databricks CLI's JSON schema, loaded through
the `databricks-bundles` typed classes, and cross-checked for the mistakes
neither of those can see (dangling references, wrong command, missing env)."""

from __future__ import annotations

import ast
import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from .support import SCHEMA_PATH, schema_errors

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLE_PATH = PROJECT_ROOT / "databricks.yml"
APP_YAML_PATH = PROJECT_ROOT / "app.yaml"
MANIFEST_PATH = PROJECT_ROOT / "manifest.yaml"
# The app that app.yaml and manifest.yaml describe (deploying without the bundle).
APP_FILES_KEY = "agent_openai"

APP_KEYS = ("agent_openai", "agent_langgraph")
# What the server reads at startup (see agent_server/start_server.py and
# agent_server/utils.py). Each must be set by both apps or be optional.
REQUIRED_IN_APP = {
    "AGENT_FRAMEWORK",
    "AGENT_SERVER_DB_SCHEMA",
    "LLM_ENDPOINT_NAME",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_ID",
    "TASK_TIMEOUT_SECONDS",
    "POLL_INTERVAL_SECONDS",
    "LOG_LEVEL",
}
# Optional at startup: the server has a default, or they are alternatives of
# which the app sets one (the Lakebase settings) or local-only (DATABASE_URL).
OPTIONAL_AT_STARTUP = {
    "MAX_CONCURRENT_TASKS",
    "DATABASE_URL",
    "LAKEBASE_AUTOSCALING_ENDPOINT",
    "LAKEBASE_AUTOSCALING_PROJECT",
    "LAKEBASE_AUTOSCALING_BRANCH",
    "LAKEBASE_INSTANCE_NAME",
}
LAKEBASE_SETTINGS = {
    "LAKEBASE_AUTOSCALING_ENDPOINT",
    "LAKEBASE_AUTOSCALING_PROJECT",
    "LAKEBASE_INSTANCE_NAME",
}
# Set by the Databricks Apps runtime itself, never in app config.
PLATFORM_ENV_PREFIXES = ("DATABRICKS_", "PG")

_VAR_REF = re.compile(r"\$\{var\.([A-Za-z0-9_-]+)")
_APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,28}[a-z0-9]$")


def load_bundle(path: Path = BUNDLE_PATH) -> dict:
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- validators


def cross_check_errors(bundle: dict, root: Path = PROJECT_ROOT) -> list[str]:
    """What the schema cannot check: references, paths, commands, env."""
    errors: list[str] = []
    declared = set(bundle.get("variables") or {})
    for ref in sorted(_var_refs(bundle)):
        if ref not in declared:
            errors.append(f"${{var.{ref}}} is used but not declared under variables")

    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"].get("scripts", {})
    for key, app in (bundle.get("resources", {}).get("apps") or {}).items():
        resource_names = {r["name"] for r in app.get("resources") or []}
        env = (app.get("config") or {}).get("env") or []
        for var in env:
            source = var.get("value_from")
            if source is not None and source not in resource_names:
                errors.append(
                    f"app {key}: env {var['name']} has value_from {source!r}, "
                    f"but the app's resources are {sorted(resource_names)}"
                )
        source_path = root / app.get("source_code_path", "")
        if not source_path.is_dir():
            errors.append(f"app {key}: source_code_path {app.get('source_code_path')!r} does not exist")
        command = (app.get("config") or {}).get("command") or []
        if command[:2] != ["uv", "run"] or len(command) < 3 or command[2] not in scripts:
            errors.append(
                f"app {key}: command {command} must be `uv run <script>` with a "
                f"[project.scripts] entry; known: {sorted(scripts)}"
            )
    return errors


def _resource_kind(resource: dict) -> str:
    (kind,) = [k for k in resource if k not in ("name", "description")]
    return kind


def app_files_errors(bundle: dict, app_yaml: dict, manifest: dict, key: str = APP_FILES_KEY) -> list[str]:
    """app.yaml and manifest.yaml say what databricks.yml says for app ``key``:
    the same command, the same env (a ``${var.x}`` value becomes ``valueFrom``
    the resource that uses ``${var.x}``) and the same resources and permissions."""
    from databricks.sdk.service.apps import AppResource

    errors: list[str] = []
    app = bundle["resources"]["apps"][key]
    resources = {r["name"]: r for r in app.get("resources") or []}

    if set(app_yaml) - {"command", "env"}:
        errors.append(f"app.yaml: unknown keys {sorted(set(app_yaml) - {'command', 'env'})}")
    if app_yaml.get("command") != app["config"]["command"]:
        errors.append(f"app.yaml: command {app_yaml.get('command')} differs from databricks.yml's {app['config']['command']}")
    ours = {v.get("name"): v for v in app_yaml.get("env") or []}
    theirs = {v["name"]: v for v in app["config"]["env"]}
    if list(ours) != list(theirs):
        errors.append(f"app.yaml: env names {list(ours)} differ from databricks.yml's {list(theirs)}")
    for name, var in ours.items():
        if set(var) not in ({"name", "value"}, {"name", "valueFrom"}):
            errors.append(f"app.yaml: env {name} needs exactly one of value / valueFrom, has {sorted(var)}")
            continue
        want = theirs.get(name)
        if want is None:
            continue
        if "value_from" in want:
            expected = {"valueFrom": want["value_from"]}
        elif _VAR_REF.search(str(want["value"])):
            users = [n for n, r in resources.items() if want["value"] in _leaf_strings(r)]
            expected = {"valueFrom": users[0]} if users else {"value": "<a resource using " + want["value"] + ">"}
        else:
            expected = {"value": str(want["value"])}
        got = {k: str(v) for k, v in var.items() if k != "name"}
        if got != expected:
            errors.append(f"app.yaml: env {name} is {got}, databricks.yml means {expected}")
        if "valueFrom" in var and var["valueFrom"] not in {s.get("name") for s in manifest.get("resource_specs") or []}:
            errors.append(f"app.yaml: env {name} valueFrom {var['valueFrom']!r} is not a resource in manifest.yaml")

    if set(manifest) - {"version", "name", "description", "resource_specs"}:
        errors.append(f"manifest.yaml: unknown keys {sorted(set(manifest) - {'version', 'name', 'description', 'resource_specs'})}")
    if manifest.get("version") != 1:
        errors.append("manifest.yaml: version must be 1")
    if not manifest.get("name"):
        errors.append("manifest.yaml: needs a name")
    known_kinds = set(AppResource.__dataclass_fields__) - {"name", "description"}
    specs = {}
    for spec in manifest.get("resource_specs") or []:
        kinds = [k for k in spec if k.endswith("_spec")]
        extra = set(spec) - {"name", "description", *kinds}
        if len(kinds) != 1 or extra:
            errors.append(f"manifest.yaml: resource {spec.get('name')!r} needs one *_spec and nothing else, has {sorted(spec)}")
            continue
        kind = kinds[0].removesuffix("_spec")
        if kind not in known_kinds:
            errors.append(f"manifest.yaml: {kinds[0]} is not an app resource kind ({sorted(known_kinds)})")
        specs[spec["name"]] = (kind, (spec[kinds[0]] or {}).get("permission"))
    declared = {n: (_resource_kind(r), r[_resource_kind(r)].get("permission")) for n, r in resources.items()}
    if specs != declared:
        errors.append(f"manifest.yaml: resources {specs} differ from databricks.yml's {declared}")
    return errors


def _leaf_strings(node) -> set[str]:
    if isinstance(node, dict):
        return set().union(set(), *(_leaf_strings(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(set(), *(_leaf_strings(v) for v in node))
    return {node} if isinstance(node, str) else set()


def _var_refs(node) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_var_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_var_refs(v) for v in node)) if node else set()
    if isinstance(node, str):
        return set(_VAR_REF.findall(node))
    return set()


def app_env(bundle: dict, key: str) -> dict[str, dict]:
    return {v["name"]: v for v in bundle["resources"]["apps"][key]["config"]["env"]}


def env_reads_in_code(root: Path = PROJECT_ROOT / "agent_server") -> dict[str, bool]:
    """Environment variables the server code reads: name -> read without a default.

    ``os.environ["X"]`` is a read without default; ``os.getenv("X"[, d])`` and
    ``os.environ.get("X"[, d])`` are reads that tolerate absence.
    """
    reads: dict[str, bool] = {}
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and _is_os_environ(node.value)
                and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)
            ):
                reads[node.slice.value] = True
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                is_getenv = isinstance(func, ast.Attribute) and func.attr == "getenv"
                is_environ_get = isinstance(func, ast.Attribute) and func.attr == "get" and _is_os_environ(func.value)
                if (is_getenv or is_environ_get) and isinstance(node.args[0].value, str):
                    reads.setdefault(node.args[0].value, False)
    return reads


def _is_os_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


# --------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def bundle() -> dict:
    return load_bundle()


@pytest.fixture(scope="module")
def schema_path() -> Path:
    if not SCHEMA_PATH.is_file():
        pytest.skip(
            f"Databricks bundle JSON schema not found at {SCHEMA_PATH}; it lives outside the "
            "repository (../shared/schemas). Generate it with `databricks bundle schema` to run this check."
        )
    return SCHEMA_PATH


def test_bundle_matches_cli_json_schema(bundle, schema_path):
    assert schema_errors(bundle, schema_path) == []


def test_schema_validation_rejects_unknown_fields(bundle, schema_path):
    """Guard against a vacuous validator: a field the CLI does not know must fail."""
    broken = copy.deepcopy(bundle)
    resources = broken["resources"]["apps"]["agent_openai"]["resources"]
    postgres = next(r for r in resources if "postgres" in r)
    postgres["postgres"]["endpoint"] = "projects/p/branches/b/endpoints/primary"
    errors = schema_errors(broken, schema_path)
    assert any("endpoint" in e for e in errors), errors


def test_schema_validation_uses_unicode_patterns(schema_path):
    """``\\p{L}`` patterns accept variable references in typed fields."""
    bundle = {
        "bundle": {"name": "x"},
        "variables": {"port_count": {"default": 1}},
        "resources": {"apps": {"a": {"name": "a-b", "source_code_path": "./", "compute_max_instances": "${var.port_count}"}}},
    }
    assert schema_errors(bundle, schema_path) == []
    bundle["resources"]["apps"]["a"]["compute_max_instances"] = "not a number"
    assert schema_errors(bundle, schema_path) != []


def test_apps_load_through_databricks_bundles_typed_classes(bundle):
    from databricks.bundles.apps import App

    for key in APP_KEYS:
        app = App.from_dict(bundle["resources"]["apps"][key])
        assert app.source_code_path == "./"
        assert app.config.command == ["uv", "run", "start-server", "--workers", "2"]
        kinds = {
            r.name: next(k for k in ("postgres", "database", "experiment", "serving_endpoint") if getattr(r, k))
            for r in app.resources
        }
        # `database` when quickstart switched the file to Lakebase Provisioned.
        assert sorted(kinds.values()) in (
            ["experiment", "postgres", "serving_endpoint"],
            ["database", "experiment", "serving_endpoint"],
        )
    for target in bundle["targets"].values():
        for key, override in ((target.get("resources") or {}).get("apps") or {}).items():
            merged = {**bundle["resources"]["apps"][key], **override}
            App.from_dict(merged)


def test_typed_classes_reject_unknown_fields(bundle):
    from databricks.bundles.apps import App

    broken = copy.deepcopy(bundle["resources"]["apps"]["agent_openai"])
    broken["config"]["env"][0]["valueFrom"] = "postgres"  # app.yaml spelling, wrong here
    with pytest.raises(ValueError, match="valueFrom"):
        App.from_dict(broken)


def test_cross_checks_pass(bundle):
    assert cross_check_errors(bundle) == []


def test_cross_checks_catch_dangling_references(bundle):
    broken = copy.deepcopy(bundle)
    app = broken["resources"]["apps"]["agent_langgraph"]
    app["resources"] = [r for r in app["resources"] if r["name"] != "experiment"]
    app["config"]["env"].append({"name": "X", "value": "${var.nope}"})
    app["config"]["command"] = ["uv", "run", "no-such-script"]
    app["source_code_path"] = "./missing"
    errors = "\n".join(cross_check_errors(broken))
    assert "value_from 'experiment'" in errors
    assert "${var.nope}" in errors
    assert "no-such-script" in errors
    assert "./missing" in errors


def test_two_apps_share_source_and_differ_only_where_they_must(bundle):
    apps = bundle["resources"]["apps"]
    assert set(apps) == set(APP_KEYS)
    a, b = (copy.deepcopy(apps[k]) for k in APP_KEYS)
    assert app_env(bundle, "agent_openai")["AGENT_FRAMEWORK"]["value"] == "openai"
    assert app_env(bundle, "agent_langgraph")["AGENT_FRAMEWORK"]["value"] == "langgraph"
    for app in (a, b):
        assert _APP_NAME.match(app["name"]), f"{app['name']!r}: lowercase, hyphens, at most 30 characters"
        for key in ("name", "description"):
            app.pop(key)
        app["config"]["env"] = [
            v for v in app["config"]["env"] if v["name"] not in {"AGENT_FRAMEWORK", "AGENT_SERVER_DB_SCHEMA"}
        ]
    assert a == b


def test_each_app_keeps_runs_in_its_own_valid_schema(bundle):
    schemas = [app_env(bundle, k)["AGENT_SERVER_DB_SCHEMA"]["value"] for k in APP_KEYS]
    assert len(set(schemas)) == len(schemas), schemas
    from agent_server.long_running.settings import EngineSettings

    for schema in schemas:
        EngineSettings(db_schema=schema)  # the engine's own rule; raises with the reason


def test_app_names_are_unique_per_target(bundle):
    base = {k: bundle["resources"]["apps"][k]["name"] for k in APP_KEYS}
    seen = set(base.values())
    for name, target in bundle["targets"].items():
        overrides = ((target.get("resources") or {}).get("apps")) or {}
        names = {k: overrides.get(k, {}).get("name", base[k]) for k in APP_KEYS}
        assert len(set(names.values())) == 2
        for app_name in names.values():
            assert _APP_NAME.match(app_name), app_name
        if name != "dev":
            # App names are not prefixed per target, so prod must not reuse dev's.
            assert not (set(names.values()) & seen), f"target {name} reuses app names {names}"


def test_targets_dev_default_and_prod(bundle):
    targets = bundle["targets"]
    assert targets["dev"] == {**targets["dev"], "mode": "development", "default": True}
    assert targets["prod"]["mode"] == "production"


def test_required_settings_and_resources(bundle):
    for key in APP_KEYS:
        env = app_env(bundle, key)
        resources = {r["name"]: r for r in bundle["resources"]["apps"][key]["resources"]}
        assert env["MLFLOW_TRACKING_URI"]["value"] == "databricks"
        assert env["MLFLOW_REGISTRY_URI"]["value"] == "databricks-uc"
        assert "experiment" in resources[env["MLFLOW_EXPERIMENT_ID"]["value_from"]]
        if "LAKEBASE_AUTOSCALING_ENDPOINT" in env:
            lakebase = resources[env["LAKEBASE_AUTOSCALING_ENDPOINT"]["value_from"]]["postgres"]
            assert lakebase == {
                "branch": "${var.lakebase_branch}",
                "database": "${var.lakebase_database}",
                "permission": "CAN_CONNECT_AND_CREATE",
            }
        else:  # Lakebase Provisioned, as quickstart writes it
            database = next(r["database"] for r in resources.values() if "database" in r)
            assert env["LAKEBASE_INSTANCE_NAME"]["value"] == database["instance_name"]
        endpoint = next(r for r in resources.values() if "serving_endpoint" in r)["serving_endpoint"]
        assert endpoint == {"name": env["LLM_ENDPOINT_NAME"]["value"], "permission": "CAN_QUERY"}
        # Deployed apps use Lakebase; a DATABASE_URL would silently bypass it.
        assert "DATABASE_URL" not in env


def test_every_startup_env_var_is_set_or_optional(bundle):
    for key in APP_KEYS:
        env = set(app_env(bundle, key))
        missing = REQUIRED_IN_APP - env
        assert not missing, f"app {key} does not set {sorted(missing)}"
        assert env & LAKEBASE_SETTINGS, f"app {key} sets no Lakebase setting"
        # Whatever the code reads without a default must be set by the app
        # (or by the Apps runtime); this catches a new required variable.
        for name, required in env_reads_in_code().items():
            if required and name not in env and not name.startswith(PLATFORM_ENV_PREFIXES):
                assert name in OPTIONAL_AT_STARTUP, (
                    f"the server reads {name} without a default, but app {key} does not set it"
                )


def test_lakebase_blocks_are_what_quickstart_renders():
    """quickstart re-renders the marked blocks; on the current file that is a no-op."""
    from scripts.bundle_config import LakebaseChoice, replace_lakebase_blocks

    text = BUNDLE_PATH.read_text()
    variables = yaml.safe_load(text)["variables"]

    def default(name):
        return (variables.get(name) or {}).get("default")

    if "lakebase_instance_name" in variables:
        choice = LakebaseChoice(instance_name=default("lakebase_instance_name"))
    else:
        choice = LakebaseChoice(branch=default("lakebase_branch"), database=default("lakebase_database"))
    assert replace_lakebase_blocks(text, choice) == text


def test_variables_have_descriptions(bundle):
    for name, var in bundle["variables"].items():
        assert var.get("description"), f"variable {name} needs a description for `bundle validate` prompts"


# ------------------------------------------------ app.yaml and manifest.yaml


@pytest.fixture(scope="module")
def app_files() -> tuple[dict, dict]:
    return yaml.safe_load(APP_YAML_PATH.read_text()), yaml.safe_load(MANIFEST_PATH.read_text())


def test_app_yaml_and_manifest_match_the_bundle(bundle, app_files):
    app_yaml, manifest = app_files
    assert app_files_errors(bundle, app_yaml, manifest) == []
    # Both bundle apps need the same resources, so the manifest fits either.
    for key in APP_KEYS:
        assert [e for e in app_files_errors(bundle, app_yaml, manifest, key) if e.startswith("manifest")] == []


def test_app_yaml_runs_what_the_server_needs(app_files):
    from agent_server.agents import FRAMEWORKS

    env = {v["name"]: v for v in app_files[0]["env"]}
    assert env["AGENT_FRAMEWORK"]["value"] in FRAMEWORKS
    assert REQUIRED_IN_APP <= set(env) and set(env) & LAKEBASE_SETTINGS
    from agent_server.long_running.settings import EngineSettings

    EngineSettings(db_schema=env["AGENT_SERVER_DB_SCHEMA"]["value"])


def test_app_files_check_catches_drift(bundle, app_files):
    app_yaml, manifest = copy.deepcopy(app_files[0]), copy.deepcopy(app_files[1])
    app_yaml["command"] = ["uv", "run", "other"]
    env = {v["name"]: v for v in app_yaml["env"]}
    env["MLFLOW_EXPERIMENT_ID"]["value_from"] = env["MLFLOW_EXPERIMENT_ID"].pop("valueFrom")  # bundle spelling
    env["LLM_ENDPOINT_NAME"] = {"name": "LLM_ENDPOINT_NAME", "value": "databricks-claude-sonnet-4-5"}
    app_yaml["env"] = [env[n] for n in env if n != "LOG_LEVEL"]
    next(s for s in manifest["resource_specs"] if s["name"] == "experiment")["experiment_spec"]["permission"] = "CAN_EDIT"
    manifest["resource_specs"].append({"name": "wh", "warehouse_spec": {"permission": "CAN_USE"}})
    errors = "\n".join(app_files_errors(bundle, app_yaml, manifest))
    for expected in ("command", "LOG_LEVEL", "MLFLOW_EXPERIMENT_ID needs exactly one", "env LLM_ENDPOINT_NAME",
                     "'experiment': ('experiment', 'CAN_EDIT')", "warehouse_spec is not an app resource kind"):
        assert expected in errors, (expected, errors)
