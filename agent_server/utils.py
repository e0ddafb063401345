"""Glue between the agents and the server: placeholder ids and Lakebase settings.

You normally don't edit this file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

try:  # the OpenAI Agents SDK's id for items built from Chat Completions output
    from agents.models.fake_id import FAKE_RESPONSES_ID
except ImportError:  # pragma: no cover - only when openai-agents is not installed
    FAKE_RESPONSES_ID = "__fake_id__"

# Our LangGraph stream conversion marks ids it cannot know yet with this prefix.
PLACEHOLDER_PREFIX = "resp_placeholder_"


def is_placeholder_id(value: str) -> bool:
    """True for an SDK placeholder id (``__fake_id__`` or ``resp_placeholder_*``)."""
    return value == FAKE_RESPONSES_ID or value.startswith(PLACEHOLDER_PREFIX)


def replace_fake_id(obj: Any, real_id: str) -> Any:
    """``obj`` with every placeholder id string replaced by ``real_id``.

    Walks dicts and lists recursively and returns new containers; a string is
    replaced only when the whole string is a placeholder (text that merely
    mentions one is left alone), and every other value is returned as is.
    """
    if isinstance(obj, dict):
        return {key: replace_fake_id(value, real_id) for key, value in obj.items()}
    if isinstance(obj, list):
        return [replace_fake_id(value, real_id) for value in obj]
    if isinstance(obj, str) and is_placeholder_id(obj):
        return real_id
    return obj


class LakebaseConfigError(ValueError):
    """The LAKEBASE_* environment variables do not describe one database."""


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


_THREE_OPTIONS = (
    "LAKEBASE_AUTOSCALING_ENDPOINT (projects/<project>/branches/<branch>/endpoints/<endpoint>), "
    "or LAKEBASE_AUTOSCALING_PROJECT together with LAKEBASE_AUTOSCALING_BRANCH, "
    "or LAKEBASE_INSTANCE_NAME (Lakebase Provisioned)"
)


def init_lakebase_config(environ: Mapping[str, str] | None = None) -> LakebaseConfig:
    """Read the Lakebase settings from the environment.

    Priority: ``LAKEBASE_AUTOSCALING_ENDPOINT`` > ``LAKEBASE_AUTOSCALING_PROJECT`` +
    ``LAKEBASE_AUTOSCALING_BRANCH`` > ``LAKEBASE_INSTANCE_NAME``. Empty values
    count as unset (``.env.example`` ships them empty).

    Raises :class:`LakebaseConfigError` when the winning mode is half set (a
    project without a branch or the reverse), or when running as a Databricks
    App (``DATABRICKS_APP_NAME`` set) with neither Lakebase nor ``DATABASE_URL``
    configured, since an App has no local disk worth keeping runs on.
    """
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return (env.get(name) or "").strip() or None

    endpoint = get("LAKEBASE_AUTOSCALING_ENDPOINT")
    project = get("LAKEBASE_AUTOSCALING_PROJECT")
    branch = get("LAKEBASE_AUTOSCALING_BRANCH")
    instance = get("LAKEBASE_INSTANCE_NAME")

    if endpoint:
        return LakebaseConfig(autoscaling_endpoint=endpoint)
    if project and branch:
        return LakebaseConfig(autoscaling_project=project, autoscaling_branch=branch)
    if project:
        raise LakebaseConfigError(
            f"LAKEBASE_AUTOSCALING_PROJECT is set ({project!r}) but LAKEBASE_AUTOSCALING_BRANCH is missing: "
            "set the branch too (e.g. production), or use LAKEBASE_AUTOSCALING_ENDPOINT instead."
        )
    if branch:
        raise LakebaseConfigError(
            f"LAKEBASE_AUTOSCALING_BRANCH is set ({branch!r}) but LAKEBASE_AUTOSCALING_PROJECT is missing: "
            "set the project too, or use LAKEBASE_AUTOSCALING_ENDPOINT instead."
        )
    if instance:
        return LakebaseConfig(instance_name=instance)
    if get("DATABRICKS_APP_NAME") and not get("DATABASE_URL"):
        raise LakebaseConfigError(
            f"No Lakebase database configured for Databricks App {get('DATABRICKS_APP_NAME')!r}. "
            f"Set one of: {_THREE_OPTIONS}. See databricks.yml for the app resource that provides it "
            "(or set DATABASE_URL to use another PostgreSQL)."
        )
    return LakebaseConfig()
