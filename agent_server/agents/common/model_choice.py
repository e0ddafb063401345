"""Which model the agents call: a Databricks serving endpoint or the offline model.

The Databricks endpoint is used when ``LLM_ENDPOINT_NAME`` is set *and*
Databricks auth is configured; otherwise the offline model, which needs no
network, answers. The choice is made once at start-up and logged.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path

OFFLINE_MODEL_NAME = "offline-demo-model"


@dataclass(frozen=True)
class ModelChoice:
    """The model in use: ``endpoint`` is ``None`` for the offline model."""

    endpoint: str | None
    reason: str

    @property
    def offline(self) -> bool:
        return self.endpoint is None

    @property
    def name(self) -> str:
        """What the Response object's ``model`` field says."""
        return OFFLINE_MODEL_NAME if self.offline else self.endpoint


def databricks_auth_source(environ=os.environ) -> str | None:
    """Where Databricks auth would come from, or ``None`` if nowhere.

    A cheap check that never touches the network: the env vars the SDK reads
    (Databricks Apps set ``DATABRICKS_HOST`` and a client id/secret), a named
    profile, or a DEFAULT profile in ``~/.databrickscfg``.
    """
    if environ.get("DATABRICKS_HOST"):
        return "DATABRICKS_HOST"
    if environ.get("DATABRICKS_CONFIG_PROFILE"):
        return f"profile {environ['DATABRICKS_CONFIG_PROFILE']}"
    config_file = Path(environ.get("DATABRICKS_CONFIG_FILE") or Path.home() / ".databrickscfg")
    parser = configparser.ConfigParser()
    try:
        parser.read(config_file)
    except (configparser.Error, OSError):
        return None
    if parser.defaults().get("host"):
        return f"DEFAULT profile in {config_file}"
    return None


def choose_model(environ=os.environ) -> ModelChoice:
    """Decide between the Databricks endpoint and the offline model."""
    endpoint = (environ.get("LLM_ENDPOINT_NAME") or "").strip()
    if not endpoint:
        return ModelChoice(None, "LLM_ENDPOINT_NAME is not set")
    source = databricks_auth_source(environ)
    if source is None:
        return ModelChoice(
            None,
            f"LLM_ENDPOINT_NAME={endpoint} but no Databricks auth is configured "
            "(set DATABRICKS_HOST or DATABRICKS_CONFIG_PROFILE, e.g. with `uv run quickstart`)",
        )
    return ModelChoice(endpoint, f"Databricks serving endpoint {endpoint} (auth from {source})")


def token_delay_seconds(environ=os.environ) -> float:
    """Pause between the offline model's tokens (``OFFLINE_MODEL_TOKEN_DELAY_SECONDS``)."""
    return max(0.0, float(environ.get("OFFLINE_MODEL_TOKEN_DELAY_SECONDS", "0.02")))
