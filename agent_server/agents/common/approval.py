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

T = TypeVar("T")

_MARK = "needs_approval"


def needs_approval(tool: T) -> T:
    """Mark an SDK tool object so that each call waits for a person's approval; returns the tool."""
    metadata = getattr(tool, "metadata", None)
    if isinstance(metadata, dict) or (metadata is None and hasattr(tool, "args_schema")):
        tool.metadata = {**(metadata or {}), _MARK: True}  # a LangChain tool (pydantic: no new attributes)
    else:
        setattr(tool, _MARK, True)
    return tool


def asks_approval(tool: Any, names: Collection[str] = ()) -> bool:
    """Whether calls of ``tool`` wait for approval (marked, a ``needs_approval`` function's, or named)."""
    if getattr(tool, "name", None) in names or getattr(tool, _MARK, False) is True:
        return True
    function = getattr(tool, "coroutine", None) or getattr(tool, "func", None)
    if getattr(function, _MARK, False) is True:
        return True
    metadata = getattr(tool, "metadata", None)
    return isinstance(metadata, dict) and metadata.get(_MARK) is True


def not_approved(status: str, reason: str | None) -> str:
    """What the model is told instead of a tool's output when the call was not approved."""
    if status == "declined":
        return "This call was not made: the user moved on without approving it."
    return "This call was not made: the user rejected it" + (f" ({reason})." if reason else ".")
