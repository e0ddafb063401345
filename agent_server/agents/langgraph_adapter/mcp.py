"""MCP tools for the LangGraph variant, checked before each run.

Uses ``databricks_langchain``'s ``DatabricksMultiServerMCPClient``:
``DatabricksMCPServer`` (Databricks OAuth from a ``WorkspaceClient``) for
workspace servers, ``MCPServer`` for any other URL. Each server's tools are
listed separately, so one that fails is left out instead of failing the run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from langchain_core.tools import BaseTool

from ..common.mcp_servers import (
    McpServerSpec,
    McpSettings,
    Unavailable,
    log_unavailable,
    reason_of,
    resolved_url,
    workspace_client,
)


async def _server_config(spec: McpServerSpec, settings: McpSettings):
    from databricks_langchain import DatabricksMCPServer, MCPServer

    common = dict(
        name=spec.name,
        timeout=settings.connect_timeout,
        sse_read_timeout=settings.tool_timeout,
        session_kwargs={"read_timeout_seconds": timedelta(seconds=settings.tool_timeout)},
        # A failing tool call goes back to the model as text, as in the OpenAI variant.
        handle_tool_error=True,
    )
    if not spec.databricks_auth:
        return MCPServer(url=spec.url, **common)
    client = await workspace_client(settings)
    return DatabricksMCPServer(url=resolved_url(spec, client), workspace_client=client, **common)


async def _tools_of(spec: McpServerSpec, settings: McpSettings) -> list[BaseTool]:
    from databricks_langchain import DatabricksMultiServerMCPClient

    async with asyncio.timeout(settings.connect_timeout):
        client = DatabricksMultiServerMCPClient([await _server_config(spec, settings)])
        # Lists the tools in a session of its own; each tool call opens a new one.
        tools = await client.get_tools(server_name=spec.name)
    for tool in tools:  # an approval request names the server a tool comes from
        tool.metadata = {**(tool.metadata or {}), "mcp_server": spec.name}
    return tools


async def load_mcp_tools(settings: McpSettings) -> tuple[list[BaseTool], list[Unavailable]]:
    """The tools of every configured server that answers; ``(tools, left out)``."""
    results = await asyncio.gather(*(_tools_of(spec, settings) for spec in settings.servers),
                                   return_exceptions=True)
    tools: list[BaseTool] = []
    unavailable: list[Unavailable] = []
    for spec, result in zip(settings.servers, results):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            unavailable.append(Unavailable(spec.name, reason_of(result)))
            log_unavailable(unavailable[-1])
        else:
            tools.extend(result)
    return tools, unavailable

