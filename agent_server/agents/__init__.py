"""The agent variants. Each registers MLflow ``@invoke()`` / ``@stream()``
handlers when imported, so a process imports exactly one of them.

``durable_tool`` and ``current_idempotency_key`` are here for the tools you add
(``tools.py``): ``from agent_server.agents import durable_tool``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from agent_server.long_running.tools.durable_tool import current_idempotency_key, durable_tool

FRAMEWORKS = {
    "openai": "agent_server.agents.openai_agent",
    "langgraph": "agent_server.agents.langgraph_agent",
}
DEFAULT_FRAMEWORK = "openai"

__all__ = ["DEFAULT_FRAMEWORK", "FRAMEWORKS", "current_idempotency_key", "durable_tool", "load_agent"]


def load_agent(framework: str) -> ModuleType:
    """Import the variant's module (which registers its handlers) and return it."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown agent framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}")
    return importlib.import_module(FRAMEWORKS[framework])
