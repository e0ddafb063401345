"""Glue between the agents and the server: placeholder ids and Lakebase settings.

You normally don't edit this file.
"""

from __future__ import annotations

from typing import Any

# The Lakebase settings have one parser, in the engine; start_server.py and
# your own code read them through these names.
from agent_server.long_running.storage.lakebase_config import (  # noqa: F401
    LakebaseConfig,
    LakebaseConfigError,
    init_lakebase_config,
)

# The OpenAI Agents SDK's id for items built from Chat Completions output
# (``agents.models.fake_id.FAKE_RESPONSES_ID``; tests check they agree). Not
# imported from the SDK: that import takes seconds, and start-up does not need it.
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
