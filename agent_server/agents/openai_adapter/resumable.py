"""The OpenAI Agents SDK run that resumes at its step and pauses for approvals.

``stream_agent(agent, request)`` runs the agent on the request and yields
Responses events. The agent (and the agents it hands off to) is copied so
that:

- the model is a :class:`~.journal.JournaledModel` (a model named by a
  string comes from the run's provider, journaled too), so a resumed
  attempt replays the model calls the last one finished;
- every ``FunctionTool`` (``tools.py`` functions, ``@function_tool`` tools,
  the MCP servers' tools) records its finished calls, so a resumed attempt
  is served them instead of running them again; ``always_run`` names tools
  that must run every time (an SDK tool object can be marked with
  ``agent_server.agents.always_run`` instead);
- tools that need approval pause the run: ``needs_approval`` names MCP tools
  that do (the agent's own tools say it themselves). The paused run's state
  is stored with its requests (``approvals.py``), and the response that
  answers them resumes it.

Outside a stored server run nothing is recorded and the run is the plain SDK run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Collection
from typing import Any

from agents import Agent, Model, RunConfig, Runner
from agents.models.multi_provider import MultiProvider
from agents.result import RunResultStreaming

from agent_server.long_running.context import attempt_is_traced
from agent_server.long_running.journal.steps import current_steps

from ..common.request_input import input_items
from .approvals import approval_events, resumed_state
from .events import responses_events
from .journal import JournaledModel, JournalingModelProvider
from .tools import ToolRules, recorded_function_tool


def _recorded(tools: list[Any], rules: ToolRules) -> list[Any]:
    return [recorded_function_tool(tool, rules) if hasattr(tool, "on_invoke_tool") else tool for tool in tools]


@dataclasses.dataclass
class DurableAgent(Agent):
    """An agent whose MCP tools record their calls (its own tools and model are made durable when
    it is built, see :func:`durable_agent`)."""

    rules: ToolRules = ToolRules()

    async def get_mcp_tools(self, run_context) -> list[Any]:
        return _recorded(await super().get_mcp_tools(run_context), self.rules)


def durable_agent(agent: Agent, rules: ToolRules = ToolRules(), _made: dict[int, Agent] | None = None) -> Agent:
    """A copy of ``agent`` (and of the agents it hands off to) with a journaled model and recorded tools."""
    made = {} if _made is None else _made
    if id(agent) in made:  # agents that hand off to each other
        return made[id(agent)]
    changes: dict[str, Any] = {
        "tools": _recorded(agent.tools, rules),
        # Passed as it is: a clone given only a new model may reset the settings to that model's defaults.
        "model_settings": agent.model_settings,
    }
    if isinstance(agent.model, Model) and not isinstance(agent.model, JournaledModel):
        changes["model"] = JournaledModel(agent.model)
    if type(agent) is Agent:
        fields = {field.name: getattr(agent, field.name) for field in dataclasses.fields(agent) if field.init}
        copy = DurableAgent(**{**fields, **changes, "rules": rules})
    else:  # a subclass of the user's: its own tools and model are durable, MCP tools are not recorded
        copy = agent.clone(**changes)
    made[id(agent)] = copy
    copy.handoffs = [durable_agent(handoff, rules, made) if isinstance(handoff, Agent) else handoff
                     for handoff in agent.handoffs]
    return copy


def _run_config(run_config: RunConfig | None) -> RunConfig:
    config = run_config or RunConfig()
    # An attempt the engine does not trace (MLflow's tracing still warming up) must not build
    # MLflow's tracer through the SDK's trace processor either: that would block the event loop.
    return dataclasses.replace(config, model_provider=JournalingModelProvider(config.model_provider
                                                                              or MultiProvider()),
                               tracing_disabled=config.tracing_disabled or not attempt_is_traced())


def run_streamed(agent: Agent, input: Any, *, always_run: Collection[str] = (), needs_approval: Collection[str] = (),
                 run_config: RunConfig | None = None, **kwargs: Any) -> RunResultStreaming:
    """``Runner.run_streamed`` with the agent made durable (see the module's docstring)."""
    return Runner.run_streamed(durable_agent(agent, ToolRules(tuple(always_run), tuple(needs_approval))),
                               input=input, run_config=_run_config(run_config), **kwargs)


async def stream_agent(agent: Agent, request: Any, *, always_run: Collection[str] = (),
                       needs_approval: Collection[str] = (), run_config: RunConfig | None = None,
                       **kwargs: Any) -> AsyncIterator[dict]:
    """Run ``agent`` on the request (or resume the run it answers approvals of); Responses events."""
    durable = durable_agent(agent, ToolRules(tuple(always_run), tuple(needs_approval)))
    steps = current_steps()
    state = await resumed_state(durable, steps) if steps is not None else None
    run_input = state if state is not None else input_items(request)
    result = Runner.run_streamed(durable, input=run_input, run_config=_run_config(run_config), **kwargs)
    async for event in responses_events(result.stream_events()):
        yield event
    if result.interruptions:
        for event in await approval_events(result, steps):
            yield event
