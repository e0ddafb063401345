"""The OpenAI Agents SDK run that resumes at its step: journaled models, every tool call recorded.

``run_streamed(agent, input)`` is ``Runner.run_streamed`` on a copy of the
agent (and of the agents it hands off to) in which:

- the model is a :class:`~.journal.JournaledModel` (a model named by a
  string comes from the run's provider, journaled too), so a resumed
  attempt replays the model calls the last one finished;
- every ``FunctionTool`` (``tools.py`` functions, ``@function_tool`` tools,
  the MCP servers' tools) records its finished calls, so a resumed attempt
  is served them instead of running them again; ``always_run`` names tools
  that must run every time (an SDK tool object can be marked with
  ``agent_server.agents.always_run`` instead).

Outside a server run nothing is recorded and the run is the plain SDK run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from agents import Agent, Model, RunConfig, Runner
from agents.models.multi_provider import MultiProvider
from agents.result import RunResultStreaming

from .journal import JournaledModel, JournalingModelProvider
from .tools import recorded_function_tool


@dataclasses.dataclass
class DurableAgent(Agent):
    """An agent whose MCP tools record their calls (its own tools and model are made durable when
    it is built, see :func:`durable_agent`)."""

    always_run: Collection[str] = ()

    async def get_mcp_tools(self, run_context) -> list[Any]:
        tools = await super().get_mcp_tools(run_context)
        return [recorded_function_tool(tool, self.always_run) if hasattr(tool, "on_invoke_tool") else tool
                for tool in tools]


def durable_agent(agent: Agent, always_run: Collection[str] = (), _made: dict[int, Agent] | None = None) -> Agent:
    """A copy of ``agent`` (and of the agents it hands off to) with a journaled model and recorded tools."""
    made = {} if _made is None else _made
    if id(agent) in made:  # agents that hand off to each other
        return made[id(agent)]
    changes: dict[str, Any] = {
        "tools": [recorded_function_tool(tool, always_run) if hasattr(tool, "on_invoke_tool") else tool
                  for tool in agent.tools],
        # Passed as it is: a clone given only a new model may reset the settings to that model's defaults.
        "model_settings": agent.model_settings,
    }
    if isinstance(agent.model, Model) and not isinstance(agent.model, JournaledModel):
        changes["model"] = JournaledModel(agent.model)
    if type(agent) is Agent:
        fields = {field.name: getattr(agent, field.name) for field in dataclasses.fields(agent) if field.init}
        copy = DurableAgent(**{**fields, **changes, "always_run": tuple(always_run)})
    else:  # a subclass of the user's: its own tools and model are durable, MCP tools are not recorded
        copy = agent.clone(**changes)
    made[id(agent)] = copy
    copy.handoffs = [durable_agent(handoff, always_run, made) if isinstance(handoff, Agent) else handoff
                     for handoff in agent.handoffs]
    return copy


def run_streamed(agent: Agent, input: Any, *, always_run: Collection[str] = (),
                 run_config: RunConfig | None = None, **kwargs: Any) -> RunResultStreaming:
    """``Runner.run_streamed`` with the agent made durable (see the module's docstring)."""
    config = run_config or RunConfig()
    config = dataclasses.replace(config, model_provider=JournalingModelProvider(config.model_provider
                                                                               or MultiProvider()))
    return Runner.run_streamed(durable_agent(agent, always_run), input=input, run_config=config, **kwargs)
