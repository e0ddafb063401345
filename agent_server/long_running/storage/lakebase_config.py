"""Which Lakebase database to use: the one parser of the Lakebase settings.

The server's start-up (``agent_server.utils.init_lakebase_config``), the
engine's choice of backend (``database.resolve_target``) and
``grant-lakebase-permissions`` all read them here, so the priority and the
error messages are the same everywhere.

Three modes, first match wins: an autoscaling endpoint; an autoscaling
project together with a branch; a provisioned instance. Empty or blank
values count as unset (``.env.example`` ships them empty).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


class LakebaseConfigError(ValueError):
    """The Lakebase settings do not describe one database; the message says which to set."""


@dataclass(frozen=True)
class LakebaseConfig:
    """Which Lakebase database the server uses; only the chosen mode's fields are set.

    All fields ``None`` means "no Lakebase": locally the server then uses
    ``DATABASE_URL`` or an embedded PostgreSQL.
    """

    instance_name: str | None = None
    autoscaling_endpoint: str | None = None
    autoscaling_project: str | None = None
    autoscaling_branch: str | None = None

    @property
    def configured(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        if self.autoscaling_endpoint:
            return f"Lakebase autoscaling endpoint {self.autoscaling_endpoint}"
        if self.autoscaling_branch:
            return f"Lakebase autoscaling project {self.autoscaling_project} branch {self.autoscaling_branch}"
        return f"Lakebase instance {self.instance_name}"

    def pool_arguments(self) -> dict[str, Any]:
        """Keyword arguments for databricks-ai-bridge's ``LakebasePool`` / ``AsyncLakebasePool``."""
        return {"instance_name": self.instance_name, "autoscaling_endpoint": self.autoscaling_endpoint,
                "project": self.autoscaling_project, "branch": self.autoscaling_branch}


#: What each field is called where the user sets it, so an error names what to change.
ENVIRONMENT_NAMES = {
    "instance_name": "LAKEBASE_INSTANCE_NAME",
    "autoscaling_endpoint": "LAKEBASE_AUTOSCALING_ENDPOINT",
    "autoscaling_project": "LAKEBASE_AUTOSCALING_PROJECT",
    "autoscaling_branch": "LAKEBASE_AUTOSCALING_BRANCH",
}
ARGUMENT_NAMES = {  # LongRunningAgentServer's constructor
    "instance_name": "db_instance_name",
    "autoscaling_endpoint": "db_autoscaling_endpoint",
    "autoscaling_project": "db_project",
    "autoscaling_branch": "db_branch",
}

THREE_OPTIONS = (
    "LAKEBASE_AUTOSCALING_ENDPOINT (projects/<project>/branches/<branch>/endpoints/<endpoint>), "
    "or LAKEBASE_AUTOSCALING_PROJECT together with LAKEBASE_AUTOSCALING_BRANCH, "
    "or LAKEBASE_INSTANCE_NAME (Lakebase Provisioned)"
)


def _clean(value: str | None) -> str | None:
    return (value or "").strip() or None


def choose_lakebase(values: LakebaseConfig, names: Mapping[str, str] = ENVIRONMENT_NAMES) -> LakebaseConfig:
    """The one mode ``values`` selects, by priority, with the other fields cleared.

    Raises :class:`LakebaseConfigError` when the winning mode is half set (a
    project without a branch or the reverse); ``names`` says what the fields
    are called in the message.
    """
    endpoint, project, branch, instance = (_clean(getattr(values, field)) for field in (
        "autoscaling_endpoint", "autoscaling_project", "autoscaling_branch", "instance_name"))
    if endpoint:
        return LakebaseConfig(autoscaling_endpoint=endpoint)
    if project and branch:
        return LakebaseConfig(autoscaling_project=project, autoscaling_branch=branch)
    project_name, branch_name = names["autoscaling_project"], names["autoscaling_branch"]
    if project:
        raise LakebaseConfigError(
            f"{project_name} is set ({project!r}) but {branch_name} is missing: "
            f"set the branch too (e.g. production), or use {names['autoscaling_endpoint']} instead."
        )
    if branch:
        raise LakebaseConfigError(
            f"{branch_name} is set ({branch!r}) but {project_name} is missing: "
            f"set the project too, or use {names['autoscaling_endpoint']} instead."
        )
    if instance:
        return LakebaseConfig(instance_name=instance)
    return LakebaseConfig()


def lakebase_from_environment(environ: Mapping[str, str] | None = None) -> LakebaseConfig:
    """The ``LAKEBASE_*`` variables, by priority (see :func:`choose_lakebase`)."""
    env = os.environ if environ is None else environ
    return choose_lakebase(LakebaseConfig(**{field: env.get(name) for field, name in ENVIRONMENT_NAMES.items()}))


def require_a_database_on_apps(config: LakebaseConfig, environ: Mapping[str, str]) -> None:
    """Raise when running as a Databricks App with neither Lakebase nor ``DATABASE_URL``:
    an App has no local disk worth keeping runs on."""
    app = _clean(environ.get("DATABRICKS_APP_NAME"))
    if app and not config.configured and not _clean(environ.get("DATABASE_URL")):
        raise LakebaseConfigError(
            f"No Lakebase database configured for Databricks App {app!r}. "
            f"Set one of: {THREE_OPTIONS}. See databricks.yml for the app resource that provides it "
            "(or set DATABASE_URL to use another PostgreSQL)."
        )


def init_lakebase_config(environ: Mapping[str, str] | None = None) -> LakebaseConfig:
    """Read the Lakebase settings from the environment (``os.environ`` by default).

    Priority: ``LAKEBASE_AUTOSCALING_ENDPOINT`` > ``LAKEBASE_AUTOSCALING_PROJECT`` +
    ``LAKEBASE_AUTOSCALING_BRANCH`` > ``LAKEBASE_INSTANCE_NAME``.

    Raises :class:`LakebaseConfigError` when the winning mode is half set, or
    when running as a Databricks App (``DATABRICKS_APP_NAME`` set) with
    neither Lakebase nor ``DATABASE_URL`` configured.
    """
    env = os.environ if environ is None else environ
    config = lakebase_from_environment(env)
    require_a_database_on_apps(config, env)
    return config
