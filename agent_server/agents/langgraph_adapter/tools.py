"""``tools.py``'s functions as LangChain tools that tell the engine their call id.

LangGraph's ``ToolNode`` invokes a tool with the model's tool call (its id
included); this tool notes the id for the engine before running as usual.
"""

from __future__ import annotations

import inspect
from typing import Any

from langchain_core.tools import StructuredTool

from agent_server.long_running.tools.tool_calls import sdk_call_id


class _CallIdTool(StructuredTool):
    async def ainvoke(self, input: Any, config=None, **kwargs: Any) -> Any:
        with sdk_call_id(_call_id(input)):
            return await super().ainvoke(input, config, **kwargs)

    def invoke(self, input: Any, config=None, **kwargs: Any) -> Any:
        with sdk_call_id(_call_id(input)):
            return super().invoke(input, config, **kwargs)


def _call_id(input: Any) -> str | None:
    if isinstance(input, dict) and input.get("type") == "tool_call":
        return input.get("id")
    return None


def as_langchain_tool(function) -> StructuredTool:
    """``StructuredTool.from_function`` (async tools need ``coroutine=``, sync ones ``func=``)."""
    if inspect.iscoroutinefunction(function):
        return _CallIdTool.from_function(coroutine=function)
    return _CallIdTool.from_function(func=function)
