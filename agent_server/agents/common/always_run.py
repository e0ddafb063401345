"""``always_run``: the opt-out from serving a finished call from the record, for tools an SDK declares.

A ``tools.py`` function says ``@durable_tool(always_run=True)``; a tool
object declared the SDK's own way (an Agents SDK ``FunctionTool``, a
LangChain tool) is marked with ``always_run(tool)``; an MCP tool, which the
agent code never builds, is named in the ``always_run`` argument of the
variant's run helper. Such a tool runs again when a resumed attempt calls
it (its calls are still recorded and keep their idempotency key).
``mark`` / ``is_marked`` are the marks every such tool option uses
(``approval.py``'s ``needs_approval`` too).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

T = TypeVar("T")


def mark(tool: T, name: str) -> T:
    """Set the mark ``name`` on an SDK tool object; returns the tool."""
    metadata = getattr(tool, "metadata", None)
    if isinstance(metadata, dict) or (metadata is None and hasattr(tool, "args_schema")):
        tool.metadata = {**(metadata or {}), name: True}  # a LangChain tool (pydantic: no new attributes)
    else:
        setattr(tool, name, True)
    return tool


def is_marked(tool: Any, name: str, names: Collection[str] = ()) -> bool:
    """Whether ``tool`` has the mark ``name``, its function has it (a ``@durable_tool`` option), or
    the tool's name is in ``names``."""
    if getattr(tool, "name", None) in names or getattr(tool, name, False) is True:
        return True
    function = getattr(tool, "coroutine", None) or getattr(tool, "func", None)
    if getattr(function, name, False) is True:
        return True
    metadata = getattr(tool, "metadata", None)
    return isinstance(metadata, dict) and metadata.get(name) is True


def always_run(tool: T) -> T:
    """Mark an SDK tool object so that its calls run again in a resumed attempt; returns the tool."""
    return mark(tool, "always_run")


def is_always_run(tool: Any, names: Collection[str] = ()) -> bool:
    """Whether ``tool`` is marked, is a ``@durable_tool(always_run=True)`` function's, or is named in ``names``."""
    return is_marked(tool, "always_run", names)
