"""``POST /responses`` (and MLflow's ``/invocations``): parse, validate, join a conversation, then
store and start the response, or run it unstored.

Background requests are stored and answered at once (or streamed). A standard
request is stored and run the same way, and answered when it ends; with
``store: false``, or without a database, it runs unstored in this process.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import Request
from fastapi.responses import JSONResponse

from ..conversations import turns
from ..errors import ApiError
from ..ids import new_response_id
from ..process.engine import Engine
from ..runs.leases import RunLease
from ..runs.unstored import run_unstored
from ..events.response_object import created_event
from ..storage.models import ApprovalAnswer, ResponseRow, StoredEvent
from ..storage.store import ApprovalRefused, ConversationGone
from . import approval_answers, idempotency, validation
from .cancelling import interrupt_conversation
from .context import RouteContext
from .identity import owner_of, storable_headers
from .retrieval import current_response, event_stream, final_response
from .sse_response import EventStreamResponse
from .stream_end import end_on_failure, until_stopped

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who sent the request, derived once per request."""

    owner: str
    headers: dict[str, str]
    idempotency_key: str | None

    @classmethod
    def of(cls, request: Request) -> Caller:
        headers = dict(request.headers)
        return cls(owner_of(headers), headers, idempotency.key_of(headers))


@dataclass
class Admission:
    """One parsed and validated create request."""

    request: dict[str, Any]  # what the handler gets
    background: bool
    stream: bool
    store: bool
    answer_headers: dict[str, str]
    conversation: Any
    previous_response_id: Any
    strategy: str
    answers: list[ApprovalAnswer]  # mcp_approval_response items: this response resumes a paused run


async def create_response(ctx: RouteContext, request: Request, multitask_strategy: str):
    caller = Caller.of(request)
    admission = await _parse(ctx, request, multitask_strategy)
    engine = ctx.engines.engine if admission.store else None
    joins = bool(admission.conversation is not None or admission.previous_response_id is not None
                 or turns.session_key_of(admission.request))
    earlier = None
    if engine is not None and caller.idempotency_key is not None:
        try:
            earlier = await idempotency.earlier_response(engine.store, caller.owner, caller.idempotency_key,
                                                         admission.request, admission.background)
        except ApiError as exc:
            if admission.background or joins or exc.status != 503:
                raise
            engine = None  # a standard request never depends on the database: answer unstored
    # A retry (an earlier response with the same Idempotency-Key) joins nothing again: above all,
    # an interrupting retry must not cancel the response its first try created.
    turn = await _join_conversation(ctx, caller, admission) if joins and earlier is None else None
    if admission.background:
        engine = ctx.engines.require()
        response, first = ((await current_response(engine, earlier.response_id, caller.owner), None)
                           if earlier is not None else await _submit(ctx, engine, caller, admission, turn))
        if admission.stream:
            return event_stream(engine, response["id"], caller.owner, after=-1, headers=admission.answer_headers,
                                first=first)
        # The Response as stored (queued or in_progress), as OpenAI answers a background
        # create: no second read of the row on the accept path.
        return JSONResponse(response, headers=admission.answer_headers)
    return await _standard(ctx, engine, caller, admission, turn, earlier)


async def _parse(ctx: RouteContext, request: Request, multitask_strategy: str) -> Admission:
    data = await validation.read_json_body(request, ctx.settings.max_request_bytes)
    background = validation.flag(data.pop("background", None), "background")
    stream = validation.flag(data.pop("stream", None), "stream")
    conversation = data.pop("conversation", None)
    previous_response_id = data.pop("previous_response_id", None)
    strategy = turns.strategy_of(data.pop(turns.STRATEGY_FIELD, None), multitask_strategy)
    data, store, ignored = validation.request_fields(data)
    if background and not store:
        raise ApiError(400, "A background response must be stored: drop 'store': false, or 'background'.",
                       code="invalid_parameter", param="store")
    try:
        request_data = (await ctx.runtime.request_validator()).validate_and_convert_request(data)
    except ValueError as exc:
        raise ApiError(400, f"Invalid request body: {str(exc)[:2000]}", code="invalid_request") from None
    request_dict = request_data.model_dump(mode="json", exclude_none=True)
    validation.check_storable(request_dict)
    answer_headers = {"x-ignored-fields": ",".join(ignored)} if ignored else {}
    answers = approval_answers.answers_in(request_dict, previous_response_id, store)
    return Admission(request_dict, background, stream, store, answer_headers, conversation,
                     previous_response_id, strategy, answers)


async def _join_conversation(ctx: RouteContext, caller: Caller, admission: Admission) -> turns.Turn | None:
    """The stored conversation the request joins; an unstored request joins none and gets its
    history in its input now."""
    if ctx.engines.engine is None:
        if admission.conversation is None and admission.previous_response_id is None:
            return None  # a session id alone: without the database, no memory
        field = "conversation" if admission.conversation is not None else "previous_response_id"
        raise ApiError(503, f"{field} needs the database, which is unavailable: "
                       f"{ctx.engines.unavailable_reason}.", code="background_unavailable")
    store = ctx.engines.engine.store
    found_by = dict(conversation=admission.conversation, previous_response_id=admission.previous_response_id,
                    request=admission.request)
    if not admission.store:
        history = await turns.unstored_history(store, caller.owner, **found_by)
        admission.request = {**admission.request, "input": [*history, *(admission.request.get("input") or [])]}
        return None
    turn = await turns.turn_for(store, caller.owner, strategy=admission.strategy, answers=admission.answers,
                                **found_by)
    if turn is not None and turn.strategy == "interrupt":
        await interrupt_conversation(ctx.engines.engine, turn.conversation_id)
    return turn


async def _submit(ctx: RouteContext, engine: Engine, caller: Caller, admission: Admission,
                  turn: turns.Turn | None) -> tuple[dict[str, Any], StoredEvent | None]:
    """Store and start (or queue) a response: its Response object as first stored, and, for a
    streamed request, its ``response.created`` event (None when a concurrent request with the
    same key created it)."""
    # Bounded like every request (plus a second per MB: storing a large input takes time);
    # not retried: the insert may have landed.
    length = caller.headers.get("content-length", "")
    body_mb = int(length) / 1e6 if length.isdigit() else 0.0
    try:
        response = await engine.store.bounded(lambda: engine.worker.submit(
            response_id=new_response_id(), owner=caller.owner, request=admission.request, headers=caller.headers,
            stored_headers=storable_headers(caller.headers), model=ctx.model_name,
            background=admission.background, turn=turn, idempotency_key=caller.idempotency_key,
        ), retry=False, extra_seconds=body_mb)
        return response, StoredEvent(0, "response.created", created_event(response)) if admission.stream else None
    except ApiError:
        raise
    except turns.ConversationBusy as busy:
        raise ApiError(409, f"Conversation {turn.conversation_id} already has an unfinished response: "
                       f"{busy.response_id} is {busy.status.value}. Wait for it, cancel it, or send "
                       f"{turns.STRATEGY_FIELD} 'enqueue' (run after it) or 'interrupt' (cancel it).",
                       code="conversation_busy", param=turns.STRATEGY_FIELD) from None
    except ConversationGone:
        raise turns.conversation_not_found(turn.conversation_id) from None
    except ApprovalRefused as refusal:
        raise approval_answers.refused(refusal.request_id, refusal.why, refusal.expired) from None
    except psycopg.errors.UniqueViolation:
        # A concurrent request with the same Idempotency-Key created it first.
        earlier = await idempotency.earlier_response(engine.store, caller.owner, caller.idempotency_key,
                                                     admission.request, admission.background)
        if earlier is None:
            raise ApiError(409, "A request with the same Idempotency-Key was created and deleted meanwhile.",
                           code="idempotency_key_reused", param="Idempotency-Key") from None
        return await current_response(engine, earlier.response_id, caller.owner), None
    except Exception as exc:
        logger.exception("Could not store the response")
        raise ApiError(503, f"Background mode is unavailable: the database rejected the request ({exc}).",
                       code="background_unavailable") from None


async def _standard(ctx: RouteContext, engine: Engine | None, caller: Caller, admission: Admission,
                    turn: turns.Turn | None, earlier: ResponseRow | None):
    """A standard request: stored and run by the engine like a background one (so it can be
    retrieved and survives a crash), answered when it ends; unstored if asked, or if no database."""
    if engine is not None:
        first = None
        try:
            if earlier is not None:
                response_id = earlier.response_id
            else:
                response, first = await _submit(ctx, engine, caller, admission, turn)
                response_id = response["id"]
        except ApiError as exc:
            if exc.status != 503 or turn is not None:
                raise  # a refused turn or reused Idempotency-Key, or a turn whose history only the database has
            engine = None  # a standard request never depends on the database: answer unstored
    headers = {**admission.answer_headers, "x-response-stored": "true" if engine is not None else "false"}
    if engine is not None:
        if admission.stream:
            return event_stream(engine, response_id, caller.owner, after=-1, headers=headers, first=first)
        return JSONResponse(await final_response(engine, response_id, caller.owner), headers=headers)
    return await _unstored(ctx, caller, admission, headers)


async def _unstored(ctx: RouteContext, caller: Caller, admission: Admission, headers: dict[str, str]):
    timeout = ctx.settings.task_timeout_seconds
    lease = RunLease.first_attempt(response_id=new_response_id(), request=admission.request, headers=caller.headers,
                                   owner=caller.owner, created_at=time.time(), task_timeout_seconds=timeout,
                                   model=ctx.model_name, background=False, next_sequence=0)
    events = run_unstored(lease, ctx.handler, timeout)
    if admission.stream:
        async def frames() -> AsyncIterator[str]:
            async with aclosing(events) as stream_events:
                async for data in stream_events:
                    yield f"data: {data}\n\n"

        # Not stored, so not resumable; still, a shutdown ends it with an error frame, not a cut.
        chunks = end_on_failure(until_stopped(frames(), ctx.engines.stopping), lease.response_id)
        return EventStreamResponse(chunks, headers=headers)
    last = None
    async with aclosing(events) as stream_events:
        async for data in stream_events:
            last = data
    return JSONResponse(json.loads(last)["response"], headers=headers)
