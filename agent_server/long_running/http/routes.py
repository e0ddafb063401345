"""The route table: which path calls which function.

MLflow's ``AgentServer`` routes (``/invocations``, ``/responses``, ``/agent/info``,
``/health``) plus background mode's: retrieval, listing, input items, cancel,
delete, and the ``/conversations`` and ``/memories`` endpoints.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agent_server.web import install_web_page

from ..errors import not_found
from ..events.response_object import response_from_row
from . import cancelling, retrieval
from .admission import create_response
from .context import RouteContext
from .conversation_routes import install_conversation_routes
from .health import agent_info, health
from .identity import owner_of
from .input_items import list_input_items
from .listing import list_page
from .memory_routes import install_memory_routes
from .paging import page_of
from .validation import check_response_id


def install_routes(app: FastAPI, ctx: RouteContext, *, serve_web_page: bool) -> None:
    engines, strategy = ctx.engines, ctx.settings.multitask_strategy

    def owned(response_id: str, request: Request):
        """The engine and the caller, for a route on one response (a malformed id is a 404 at once)."""
        check_response_id(response_id)
        return engines.require(), owner_of(request.headers)

    @app.post("/invocations")
    async def invocations(request: Request):
        return await create_response(ctx, request, strategy)

    @app.post("/responses")
    async def create(request: Request):
        """As OpenAI's ``client.responses.create(...)``."""
        return await create_response(ctx, request, strategy)

    @app.get("/agent/info")
    async def info():
        return agent_info()

    @app.get("/health")
    async def health_route() -> JSONResponse:
        return JSONResponse(await health(ctx))

    @app.get("/responses")
    async def list_responses(request: Request):
        return await list_page(engines.require().store, owner_of(request.headers), request.query_params)

    if serve_web_page:
        install_web_page(app)

    install_conversation_routes(app, lambda: engines.require().store, ctx.runtime.request_validator,
                                ctx.settings.max_request_bytes)
    install_memory_routes(app, ctx)

    @app.get("/responses/{response_id}")
    async def retrieve(response_id: str, request: Request):
        engine, owner = owned(response_id, request)
        return await retrieval.retrieve(engine, response_id, owner, request)

    @app.get("/responses/{response_id}/input_items")
    async def input_items(response_id: str, request: Request):
        engine, owner = owned(response_id, request)
        row = await engine.store.get_response(response_id, owner)
        if row is None:
            raise not_found(response_id)
        return list_input_items(row.request, response_id, page_of(request.query_params))

    @app.post("/responses/{response_id}/cancel")
    async def cancel(response_id: str, request: Request):
        engine, owner = owned(response_id, request)
        row = await cancelling.cancel(engine, response_id, owner, "cancelled by the client")
        return response_from_row(row)

    @app.delete("/responses/{response_id}")
    async def delete(response_id: str, request: Request):
        engine, owner = owned(response_id, request)
        await cancelling.delete(engine, response_id, owner)
        return {"id": response_id, "object": "response.deleted", "deleted": True}
