"""The LangGraph variant. This is the file you edit.

A tool-calling graph: the model node answers or asks for tools, the tools
node runs them, and the loop ends when the model answers without a tool call.
Change the tools (see ``tools.py``), the instructions (``instructions.py``) or ``build_graph``;
MCP servers come from ``MCP_SERVERS`` (see ``common/mcp_servers.py``). The handlers
at the bottom stream the graph to the server. Importing this module
registers them with the server.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Sequence

import mlflow
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import SystemMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, MessagesState, StateGraph
from mlflow.genai.agent_server import invoke, stream
from mlflow.types.responses import ResponsesAgentRequest

from agent_server.utils import PLACEHOLDER_PREFIX

from . import resumes_at_step
from .common.mcp_servers import mcp_settings_at_startup, note_events
from .common.model_choice import choose_model
from .common.request_input import chat_messages
from .handlers import output_of
from .instructions import INSTRUCTIONS
from .langgraph_adapter.checkpoints import stream_graph
from .langgraph_adapter.mcp import load_mcp_tools
from .langgraph_adapter.tools import as_langchain_tool, durable_tool_node, route_tool_calls
from .tools import TOOLS

MODEL = choose_model()
MCP = mcp_settings_at_startup()

mlflow.langchain.autolog()


def build_model() -> BaseChatModel:
    """The chat model: a Databricks serving endpoint, or the offline model."""
    if MODEL.offline:
        from .common.offline.langchain_model import OfflineChatModel

        return OfflineChatModel()
    from databricks_langchain import ChatDatabricks

    return ChatDatabricks(endpoint=MODEL.endpoint)


def build_graph(mcp_tools: Sequence[BaseTool] = ()):
    """The compiled graph: the tools of ``tools.py`` plus this run's MCP tools."""
    tools = [*(as_langchain_tool(function) for function in TOOLS), *mcp_tools]
    model = build_model().bind_tools(tools)

    async def call_model(state: MessagesState) -> dict:
        return {"messages": [await model.ainvoke([SystemMessage(INSTRUCTIONS), *state["messages"]])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", durable_tool_node(tools))  # ToolNode, each call recorded
    graph.add_edge(START, "model")
    # Each tool call a task of its own: parallel calls that need approval are asked together.
    graph.add_conditional_edges("model", route_tool_calls, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile()


@functools.cache
def graph_without_mcp():
    """The graph when no MCP server is configured (built once per process)."""
    return build_graph()


@stream()
@resumes_at_step
async def stream_handler(request: ResponsesAgentRequest) -> AsyncIterator[dict]:
    """Run the graph, streaming Responses events (background requests use this too).

    ``stream_graph`` checkpoints each step, so a run resumed after a crash continues
    at its step (docs/durable-steps.md), and pauses before a tool that needs approval
    until a person answers (docs/approvals.md).
    """
    graph = graph_without_mcp()
    if MCP.servers:
        # Servers are checked for every run; one that fails is left out and
        # the response says so before the answer.
        mcp_tools, unavailable = await load_mcp_tools(MCP)
        for event in note_events(unavailable, f"{PLACEHOLDER_PREFIX}{uuid.uuid4().hex}"):
            yield event
        graph = build_graph(mcp_tools)
    async for event in stream_graph(graph, chat_messages(request)):
        yield event


@invoke()
async def invoke_handler(request: ResponsesAgentRequest) -> dict:
    """Run the graph to the end; the output items of the stream."""
    return await output_of(stream_handler, request)
