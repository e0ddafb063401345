"""MCP servers for the OpenAI Agents SDK variant, checked before each run.

Databricks servers use ``databricks_openai``'s ``McpServer`` (Databricks
OAuth from a ``WorkspaceClient``, MLflow tool spans); other URLs use the SDK's
own ``MCPServerStreamableHttp``. The SDK would list a server's tools lazily
inside ``Runner.run``, where one failing server fails the whole run; so each
server is connected and listed here first, and one that fails is left out.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from agents.mcp import MCPServer, MCPServerStreamableHttp

from ..common.mcp_servers import (
    McpServerSpec,
    McpSettings,
    Unavailable,
    log_unavailable,
    reason_of,
    resolved_url,
    workspace_client,
)


async def _build(spec: McpServerSpec, settings: McpSettings) -> MCPServer:
    # Tools are listed once per run (here) and cached for the rest of it.
    common = dict(name=spec.name, cache_tools_list=True, client_session_timeout_seconds=settings.tool_timeout)
    if not spec.databricks_auth:
        return MCPServerStreamableHttp(params={"url": spec.url, "timeout": settings.connect_timeout}, **common)
    from databricks_openai.agents import McpServer

    client = await workspace_client(settings)
    return McpServer(url=resolved_url(spec, client), workspace_client=client, timeout=settings.connect_timeout,
                     **common)


async def _checked(spec: McpServerSpec, settings: McpSettings, stack: AsyncExitStack) -> MCPServer:
    async with asyncio.timeout(settings.connect_timeout):
        server = await _build(spec, settings)
        try:
            await server.connect()
            await server.list_tools()
        except BaseException:
            await server.cleanup()
            raise
    stack.push_async_callback(server.cleanup)
    return server


async def connect_mcp_servers(stack: AsyncExitStack, settings: McpSettings
                              ) -> tuple[list[MCPServer], list[Unavailable]]:
    """Connect and list each configured server; ``(usable servers, left out)``.

    Usable servers stay connected until ``stack`` closes. One at a time: the
    MCP client's task groups must be entered and left in the run's own task.
    """
    servers: list[MCPServer] = []
    unavailable: list[Unavailable] = []
    for spec in settings.servers:
        try:
            servers.append(await _checked(spec, settings, stack))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            unavailable.append(Unavailable(spec.name, reason_of(error)))
            log_unavailable(unavailable[-1])
    return servers, unavailable
