"""The agent variants. Each registers MLflow ``@invoke()`` / ``@stream()``
handlers when imported, so a process imports exactly one of them.

``durable_tool`` and ``current_idempotency_key`` are here for the tools you add
(``tools.py``): ``from agent_server.agents import durable_tool``; ``always_run``
marks a tool declared the SDK's own way that must run every time, and
``needs_approval`` one whose calls wait for a person's approval;
``resumes_at_step`` marks a ``@stream()`` handler whose run continues at its
step when resumed (both variants' handlers are).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from agent_server.long_running.journal.steps import resumes_at_step
from agent_server.long_running.tools.durable_tool import current_idempotency_key, durable_tool

from .common.always_run import always_run
from .common.approval import needs_approval

FRAMEWORKS = {
    "openai": "agent_server.agents.openai_agent",
    "langgraph": "agent_server.agents.langgraph_agent",
}
DEFAULT_FRAMEWORK = "openai"

__all__ = ["DEFAULT_FRAMEWORK", "FRAMEWORKS", "always_run", "current_idempotency_key", "durable_tool", "load_agent",
           "needs_approval", "resumes_at_step"]


def load_agent(framework: str) -> ModuleType:
    """Import the variant's module (which registers its handlers) and return it."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown agent framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}")
    return importlib.import_module(FRAMEWORKS[framework])
