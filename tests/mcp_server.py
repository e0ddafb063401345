"""Real MCP servers for the tests: two FastMCP servers over streamable HTTP in
one process on 127.0.0.1 (``python tests/mcp_server.py --port N``).

- ``/calc/mcp``: ``add(a, b)``.
- ``/identity/mcp``: ``whoami()``, the bearer token the call carried (to check
  on-behalf-of-user auth).

``GET /health`` answers once both are up; any other path is a 404.
"""

from __future__ import annotations

import argparse
import contextlib

import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


def build() -> Starlette:
    calc = FastMCP("calc", streamable_http_path="/calc/mcp", log_level="WARNING")
    identity = FastMCP("identity", streamable_http_path="/identity/mcp", log_level="WARNING")

    @calc.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @identity.tool()
    def whoami(ctx: Context) -> str:
        """The bearer token this call was authorised with."""
        authorization = ctx.request_context.request.headers.get("authorization", "")
        return authorization.removeprefix("Bearer ") or "anonymous"

    async def health(_request) -> JSONResponse:
        return JSONResponse({"status": "healthy"})

    # Build the apps first: that creates each server's session manager.
    routes = [*calc.streamable_http_app().routes, *identity.streamable_http_app().routes]

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        async with calc.session_manager.run(), identity.session_manager.run():
            yield

    return Starlette(routes=[*routes, Route("/health", health)], lifespan=lifespan)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(build(), host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
