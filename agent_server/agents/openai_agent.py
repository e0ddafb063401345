"""The OpenAI Agents SDK variant. This is the file you edit.

Change the tools (see ``tools.py``), the instructions (``instructions.py``) or ``create_agent``;
MCP servers come from ``MCP_SERVERS`` (see ``common/mcp_servers.py``). The handlers
at the bottom stream the run to the server and seldom need changes.
Importing this module registers them with the server.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import mlflow
from agents import Agent, Model
from agents.mcp import MCPServer
from agents.models.fake_id import FAKE_RESPONSES_ID
from agents.tracing import set_trace_processors
from mlflow.genai.agent_server import invoke, stream
from mlflow.types.responses import ResponsesAgentRequest

from . import resumes_at_step
from .common.mcp_servers import mcp_settings_at_startup, note_events
from .common.model_choice import choose_model
from .handlers import output_of
from .instructions import INSTRUCTIONS
from .openai_adapter.mcp import connect_mcp_servers
from .openai_adapter.resumable import stream_agent
from .openai_adapter.tools import as_function_tool
from .tools import TOOLS

MODEL = choose_model()
MCP = mcp_settings_at_startup()

# Traces go to MLflow only; the SDK's default exporter would try to reach api.openai.com.
set_trace_processors([])
mlflow.openai.autolog()


@functools.cache
def build_model() -> Model:
    """The model behind the agent: a Databricks serving endpoint, or the offline model."""
    if MODEL.offline:
        from .common.offline.openai_model import OfflineAgentsModel

        return OfflineAgentsModel()
    from agents import OpenAIChatCompletionsModel
    from databricks_openai import AsyncDatabricksOpenAI

    # Databricks serving endpoints speak Chat Completions (/serving-endpoints/chat/completions).
    return OpenAIChatCompletionsModel(model=MODEL.endpoint, openai_client=AsyncDatabricksOpenAI())


def create_agent(mcp_servers: list[MCPServer] = ()) -> Agent:
    """The agent one request runs, with the MCP servers that passed this run's check."""
    return Agent(
        name="assistant",
        instructions=INSTRUCTIONS,
        model=build_model(),
        tools=[as_function_tool(tool) for tool in TOOLS],
        mcp_servers=list(mcp_servers),
    )


@stream()
@resumes_at_step
async def stream_handler(request: ResponsesAgentRequest) -> AsyncIterator[dict]:
    """Run the agent, streaming Responses events (background requests use this too).

    ``stream_agent`` records every model and tool call, so a run resumed after a crash
    continues at its step (docs/durable-steps.md), and pauses before a tool that needs
    approval until a person answers (docs/approvals.md).
    """
    # MCP servers stay connected for the whole run; one that fails its check is
    # left out, and the response says so before the answer.
    async with AsyncExitStack() as stack:
        servers, unavailable = await connect_mcp_servers(stack, MCP)
        for event in note_events(unavailable, FAKE_RESPONSES_ID):
            yield event
        async for event in stream_agent(create_agent(servers), request):
            yield event


@invoke()
async def invoke_handler(request: ResponsesAgentRequest) -> dict:
    """Run the agent to the end; the output items of the stream."""
    return await output_of(stream_handler, request)
