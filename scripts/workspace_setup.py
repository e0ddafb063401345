"""What quickstart asks the Databricks workspace, through ``databricks-sdk``.

Each function picks what exists and creates only what is missing, so running
quickstart twice creates nothing the second time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, ResourceDoesNotExist

from .bundle_config import LakebaseChoice

_ENDPOINT_PATH = re.compile(r"^projects/(?P<project>[^/]+)/branches/(?P<branch>[^/]+)/endpoints/(?P<endpoint>[^/]+)$")
_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
DEFAULT_DATABASE = "databricks_postgres"
CREATE_TIMEOUT = timedelta(minutes=20)


class SetupError(RuntimeError):
    """Something in the workspace is not as quickstart needs it; the message says what to do."""


@dataclass(frozen=True)
class LakebaseSetup:
    """The chosen Lakebase: what goes into ``.env`` and what goes into databricks.yml."""

    env: dict[str, str | None]
    bundle: LakebaseChoice
    description: str


# ---------------------------------------------------------------- experiment


def ensure_experiment(w: WorkspaceClient, *, experiment_id: str | None, experiment_name: str | None) -> tuple[str, str]:
    """Return ``(experiment_id, note)``: the given id (checked), or the named experiment, created if missing."""
    if experiment_id:
        try:
            exp = w.experiments.get_experiment(experiment_id).experiment
        except (NotFound, ResourceDoesNotExist):
            raise SetupError(f"MLflow experiment {experiment_id} does not exist or you cannot see it") from None
        return exp.experiment_id, f"using experiment {exp.name} ({exp.experiment_id})"
    name = experiment_name or f"/Users/{w.current_user.me().user_name}/long-running-agent"
    try:
        exp = w.experiments.get_by_name(name).experiment
        if exp and exp.lifecycle_stage != "deleted":
            return exp.experiment_id, f"using experiment {name} ({exp.experiment_id})"
        if exp:
            raise SetupError(f"experiment {name} is deleted; restore it in the MLflow UI or pass --experiment-name")
    except (NotFound, ResourceDoesNotExist):
        pass
    created = w.experiments.create_experiment(name=name).experiment_id
    return created, f"created experiment {name} ({created})"


# ------------------------------------------------------------------ lakebase


def lakebase_from_endpoint(w: WorkspaceClient, endpoint: str) -> LakebaseSetup:
    """An existing autoscaling endpoint, given as its resource path."""
    match = _ENDPOINT_PATH.match(endpoint)
    if not match:
        raise SetupError(
            f"{endpoint!r} is not an endpoint path; expected projects/<project>/branches/<branch>/endpoints/<endpoint>"
        )
    try:
        w.postgres.get_endpoint(endpoint)
    except (NotFound, ResourceDoesNotExist):
        raise SetupError(f"Lakebase endpoint {endpoint} does not exist or you cannot see it") from None
    branch = f"projects/{match['project']}/branches/{match['branch']}"
    return LakebaseSetup(
        env=_autoscaling_env(endpoint=endpoint),
        bundle=LakebaseChoice(branch=branch, database=_pick_database(w, branch)),
        description=f"Lakebase autoscaling endpoint {endpoint}",
    )


def lakebase_from_project(w: WorkspaceClient, project: str, branch: str | None) -> LakebaseSetup:
    """An autoscaling project (created if missing) and one of its branches (its default one if not named)."""
    if not _ID.match(project):
        raise SetupError(f"{project!r} is not a Lakebase project id (lowercase letters, digits, hyphens)")
    project_path = f"projects/{project}"
    note = ""
    try:
        w.postgres.get_project(project_path)
    except (NotFound, ResourceDoesNotExist):
        from databricks.sdk.service.postgres import Project, ProjectSpec

        print(f"creating Lakebase project {project} (this takes a minute)...")
        w.postgres.create_project(project=Project(spec=ProjectSpec(display_name=project)), project_id=project).wait()
        note = " (created)"
    branches = list(w.postgres.list_branches(parent=project_path))
    if branch:
        chosen = next((b for b in branches if b.name == f"{project_path}/branches/{branch}" or b.branch_id == branch), None)
        if chosen is None:
            known = ", ".join(sorted(_last(b.name) for b in branches)) or "none"
            raise SetupError(f"project {project} has no branch {branch!r} (branches: {known})")
    else:
        chosen = next((b for b in branches if b.status and b.status.default), None) or (branches[0] if branches else None)
        if chosen is None:
            raise SetupError(f"project {project} has no branches; create one in the Lakebase UI")
    branch_path = chosen.name
    endpoint = _pick_endpoint(w, branch_path)
    return LakebaseSetup(
        env=_autoscaling_env(project=project, branch=_last(branch_path)),
        bundle=LakebaseChoice(branch=branch_path, database=_pick_database(w, branch_path)),
        description=f"Lakebase project {project}{note}, branch {_last(branch_path)} (endpoint {_last(endpoint)})",
    )


def lakebase_from_instance(w: WorkspaceClient, instance_name: str, *, create: bool) -> LakebaseSetup:
    """A provisioned instance, created (capacity CU_1) if missing and ``create`` is set."""
    note = ""
    try:
        w.database.get_database_instance(instance_name)
    except (NotFound, ResourceDoesNotExist):
        if not create:
            raise SetupError(
                f"Lakebase instance {instance_name} does not exist; pass --create-instance to create it"
            ) from None
        from databricks.sdk.service.database import DatabaseInstance

        print(f"creating Lakebase instance {instance_name} (this takes several minutes)...")
        w.database.create_database_instance(
            DatabaseInstance(name=instance_name, capacity="CU_1")
        ).result(timeout=CREATE_TIMEOUT)
        note = " (created)"
    return LakebaseSetup(
        env={
            "LAKEBASE_INSTANCE_NAME": instance_name,
            "LAKEBASE_AUTOSCALING_ENDPOINT": None,
            "LAKEBASE_AUTOSCALING_PROJECT": None,
            "LAKEBASE_AUTOSCALING_BRANCH": None,
        },
        bundle=LakebaseChoice(instance_name=instance_name),
        description=f"Lakebase instance {instance_name}{note}",
    )


def _autoscaling_env(*, endpoint: str | None = None, project: str | None = None, branch: str | None = None):
    # Exactly one way to connect in .env, so the server never has to guess.
    return {
        "LAKEBASE_AUTOSCALING_ENDPOINT": endpoint,
        "LAKEBASE_AUTOSCALING_PROJECT": project,
        "LAKEBASE_AUTOSCALING_BRANCH": branch,
        "LAKEBASE_INSTANCE_NAME": None,
    }


def _pick_endpoint(w: WorkspaceClient, branch_path: str) -> str:
    from databricks.sdk.service.postgres import EndpointType

    endpoints = list(w.postgres.list_endpoints(parent=branch_path))
    read_write = [e for e in endpoints if e.status and e.status.endpoint_type == EndpointType.ENDPOINT_TYPE_READ_WRITE]
    if not read_write:
        raise SetupError(f"branch {branch_path} has no read-write endpoint; add a compute in the Lakebase UI")
    return read_write[0].name


def _pick_database(w: WorkspaceClient, branch_path: str) -> str:
    """The branch's ``databricks_postgres`` database (or its only one), as a resource path."""
    databases = list(w.postgres.list_databases(parent=branch_path))

    def pg_name(db) -> str | None:
        return (db.status and db.status.postgres_database) or (db.spec and db.spec.postgres_database)

    preferred = [d for d in databases if pg_name(d) == DEFAULT_DATABASE]
    if preferred:
        return preferred[0].name
    if len(databases) == 1:
        return databases[0].name
    names = ", ".join(sorted(str(pg_name(d)) for d in databases)) or "none"
    raise SetupError(
        f"branch {branch_path} has no {DEFAULT_DATABASE} database and not exactly one other (found: {names}); "
        "set lakebase_database in databricks.yml by hand"
    )


def _last(path: str) -> str:
    return path.rsplit("/", 1)[-1]
