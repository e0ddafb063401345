"""The agent variants. Each registers MLflow ``@invoke()`` / ``@stream()``
handlers when imported, so a process imports exactly one of them."""

from __future__ import annotations

import importlib
from types import ModuleType

FRAMEWORKS = {
    "openai": "agent_server.agents.openai_agent",
    "langgraph": "agent_server.agents.langgraph_agent",
}
DEFAULT_FRAMEWORK = "openai"


def load_agent(framework: str) -> ModuleType:
    """Import the variant's module (which registers its handlers) and return it."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown agent framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}")
    return importlib.import_module(FRAMEWORKS[framework])
