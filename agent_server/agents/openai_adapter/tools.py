"""Agents SDK tools whose calls are recorded, however they were declared.

``as_function_tool`` turns a ``tools.py`` function into a ``FunctionTool``.
The SDK passes a ``ToolContext`` (which holds the model's call id) to a
function whose first parameter is annotated with it, and leaves that
parameter out of the schema; this adds one in front of the tool's own
parameters, so the schema is the plain function's. A ``@durable_tool``
function records its own calls.

``recorded_function_tool`` wraps any other ``FunctionTool`` (declared with
``@function_tool``, or an MCP tool the SDK built): each call goes through
the engine's record-or-serve step under the model's call id. It also turns
on the SDK's ``needs_approval`` for the tools :class:`ToolRules` names.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import typing
from collections.abc import Collection
from typing import Any

from agents import FunctionTool, function_tool
from agents.tool_context import ToolContext

from agent_server.long_running.tools.tool_calls import run_recorded, sdk_call_id

from ..common.always_run import is_always_run
from ..common.approval import asks_approval

#: Set on a FunctionTool whose calls are already recorded (by its @durable_tool function or by
#: ``recorded_function_tool``), so it is not wrapped twice.
_RECORDS_ITS_CALLS = "records_its_calls"


@dataclasses.dataclass(frozen=True)
class ToolRules:
    """Tools named by the agent code rather than marked: MCP tools, which it never builds."""

    always_run: Collection[str] = ()  # run again when a resumed attempt calls them
    needs_approval: Collection[str] = ()  # each call waits for a person's approval


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
    tool = function_tool(call, needs_approval=getattr(function, "needs_approval", False))
    if hasattr(function, "always_run"):  # a @durable_tool
        setattr(tool, _RECORDS_ITS_CALLS, True)
    return tool


def _arguments(input_json: str) -> dict[str, Any]:
    try:
        arguments = json.loads(input_json or "{}")
    except ValueError:
        return {"input": input_json}
    return arguments if isinstance(arguments, dict) else {"input": arguments}


def recorded_function_tool(tool: FunctionTool, rules: ToolRules = ToolRules()) -> FunctionTool:
    """A copy of ``tool`` whose calls are recorded (``tool`` itself if they already are)."""
    needs_approval = tool.needs_approval or asks_approval(tool, rules.needs_approval)
    if getattr(tool, _RECORDS_ITS_CALLS, False):
        if needs_approval == tool.needs_approval:
            return tool
        marked = dataclasses.replace(tool, needs_approval=True)
        setattr(marked, _RECORDS_ITS_CALLS, True)
        return marked
    invoke = tool.on_invoke_tool
    runs_always = is_always_run(tool, rules.always_run)

    async def on_invoke_tool(context: ToolContext, input_json: str) -> Any:
        return await run_recorded(tool.name, _arguments(input_json), lambda: invoke(context, input_json),
                                  call_id=getattr(context, "tool_call_id", None), always_run=runs_always)

    recorded = dataclasses.replace(tool, on_invoke_tool=on_invoke_tool, needs_approval=needs_approval)
    setattr(recorded, _RECORDS_ITS_CALLS, True)
    return recorded
