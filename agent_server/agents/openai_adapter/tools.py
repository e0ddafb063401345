"""``tools.py``'s functions as OpenAI Agents SDK tools that tell the engine their call id.

The SDK passes a ``ToolContext`` (which holds the model's call id) to a
function whose first parameter is annotated with it, and leaves that
parameter out of the schema; this adds one in front of the tool's own
parameters, so the schema is the plain function's.
"""

from __future__ import annotations

import functools
import inspect
import typing

from agents import FunctionTool, function_tool
from agents.tool_context import ToolContext

from agent_server.long_running.tools.tool_calls import sdk_call_id


def as_function_tool(function) -> FunctionTool:
    """``function_tool(function)``, with the SDK's call id recorded for the engine."""
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function, include_extras=True)
    if inspect.iscoroutinefunction(function):
        async def call(tool_context, *args, **kwargs):
            with sdk_call_id(tool_context.tool_call_id):
                return await function(*args, **kwargs)
    else:
        def call(tool_context, *args, **kwargs):
            with sdk_call_id(tool_context.tool_call_id):
                return function(*args, **kwargs)
    functools.update_wrapper(call, function)
    context = inspect.Parameter("tool_context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=ToolContext)
    call.__signature__ = signature.replace(parameters=[context, *signature.parameters.values()])
    call.__annotations__ = {"tool_context": ToolContext, **hints}
    return function_tool(call)
