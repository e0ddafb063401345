"""Tools that need a person's approval: which ones, and what the model is told when one is not approved.

A ``tools.py`` function says ``@durable_tool(needs_approval=True)``; a tool
declared the SDK's own way is an Agents SDK ``FunctionTool(needs_approval=True)``
or a LangChain tool marked with ``needs_approval(tool)``; an MCP tool is
named in the variant's run helper (``needs_approval=["tool"]``). The run
pauses before such a call, and resumes when the response that answers it is
run (docs/approvals.md).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from .always_run import is_marked, mark

T = TypeVar("T")


def needs_approval(tool: T) -> T:
    """Mark an SDK tool object so that each call waits for a person's approval; returns the tool."""
    return mark(tool, "needs_approval")


def asks_approval(tool: Any, names: Collection[str] = ()) -> bool:
    """Whether calls of ``tool`` wait for approval (marked, a ``needs_approval`` function's, or named)."""
    return is_marked(tool, "needs_approval", names)


def not_approved(status: str, reason: str | None, name: str = "This tool") -> str:
    """What the model is told instead of a tool's output when the call was not approved (``status``
    ``rejected``, ``declined``, or ``unstored``: a run that cannot wait for an answer)."""
    if status == "unstored":
        return (f"This call was not made: {name} needs a person's approval, which only a stored response "
                "can wait for.")
    if status == "declined":
        return "This call was not made: the user moved on without approving it."
    return "This call was not made: the user rejected it" + (f" ({reason})." if reason else ".")
