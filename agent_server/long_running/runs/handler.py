"""Running the registered ``@stream()`` / ``@invoke()`` handler for one attempt.

A handler marked ``@resumes_at_step`` (journal/steps.py) is given, on a
resumed attempt, the original request and the attempt's steps; the items it
repeats from the log are dropped and the Response's output starts with the
items earlier attempts completed. Any other handler is given the request
with the recovery message (runs/recovery.py), as its only way to know.

The only engine module that imports MLflow: the server imports it after
start-up (agent_runtime.py), so ``/health`` answers before MLflow is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import mlflow
from mlflow.genai.agent_server import get_invoke_function, get_stream_function, set_request_headers
from mlflow.genai.agent_server.validator import ResponsesAgentValidator
from mlflow.tracing.constant import SpanAttributeKey
from mlflow.types.responses import ResponsesAgentRequest

from .leases import RunLease
from ..context import traced_attempt
from ..events.stream_grammar import StreamGrammar
from ..journal.approvals import AttemptApprovals
from ..memory.access import MemoryGate, attempt_memory
from ..journal.logged_items import LoggedItems
from ..journal.model_calls import ModelCallJournal
from ..journal.steps import AttemptSteps, StoreCheckpointDatabase, attempt_steps, handler_resumes_at_step
from ..tools.tool_calls import AttemptToolCalls, attempt_tool_calls
from .writer import AttemptWriter

# ResponsesAgentValidator is re-exported: the server builds it once MLflow is imported here.
__all__ = ["HandlerInvoker", "ResponsesAgentValidator"]

logger = logging.getLogger(__name__)

_NO_OP_TRACE_ID = "MLFLOW_NO_OP_SPAN_TRACE_ID"
_INT_OR_NONE = (int, type(None))

#: ``transform_stream_event(event, response_id) -> event``: the server's extension point.
Transform = Callable[[dict, str], dict]


class HandlerInvoker:
    """Calls the handler with the attempt's request and appends what it yields to the writer.

    ``validator`` is MLflow's ResponsesAgent validator (request in, events out); ``memory`` gives
    each attempt its owner's long-term memory.
    """

    def __init__(self, validator: Any, transform: Transform, memory: MemoryGate,
                 tracing_ready: Callable[[], bool] = lambda: True):
        self.validator = validator
        self.transform = transform
        self.memory = memory
        # False while MLflow's first span would still block the event loop for seconds.
        self.tracing_ready = tracing_ready

    async def __call__(self, lease: RunLease, writer: AttemptWriter) -> None:
        """Run one attempt; its tools record their finished calls through the writer and find the
        owner's memory (or why there is none) in the attempt's context."""
        # What MLflow's get_request_headers() gives the handler (e.g. the caller's access token).
        set_request_headers(lease.headers)
        stream_fn, invoke_fn = get_stream_function(), get_invoke_function()
        handler = stream_fn or invoke_fn
        if handler is None:
            raise RuntimeError("no @stream() or @invoke() handler is registered")
        calls = AttemptToolCalls(lease.response_id, lease.attempt_number, lease.prior_tool_calls,
                                 writer.record_tool_call)
        steps = _steps_for(lease, writer) if handler_resumes_at_step(handler) else None
        memory = self.memory.for_attempt(lease.owner, lease.response_id)
        with attempt_tool_calls(calls), attempt_steps(steps), attempt_memory(memory):
            await self._run_handler(lease, writer, stream_fn, invoke_fn, steps)

    async def _run_handler(self, lease: RunLease, writer: AttemptWriter, stream_fn, invoke_fn,
                           steps: AttemptSteps | None) -> None:
        """Run one attempt, one trace per attempt, recorded on the writer as soon as it starts."""
        handler = stream_fn or invoke_fn
        request_body = lease.request
        logged: LoggedItems | None = None
        if steps is not None and lease.resume is not None:
            # Resumes at the step: the original input, and what the log has is not stored twice.
            request_body = lease.resume.original_request
            logged = LoggedItems(lease.resume.logged_items)
            writer.output_items[:0] = lease.resume.logged_items
        # Validated when accepted (a conversation's history, when each turn was): built once here, not
        # validated again (MLflow's validator builds the model twice: a long history doubles its cost).
        request = ResponsesAgentRequest(**request_body)
        if lease.history_items:  # a conversation's earlier items, parsed when the attempt started
            request.input = [*lease.history_items, *request.input]
        rid = lease.response_id
        grammar = StreamGrammar(rid, first_output_index=lease.first_output_index)

        def append(event: dict) -> None:
            if logged is not None and logged.repeats(event):
                return
            for normalised in grammar.feed(event):
                writer.append(normalised)

        traced = self.tracing_ready()
        with traced_attempt(traced), \
                mlflow.start_span(name=handler.__name__) if traced else contextlib.nullcontext() as span:
            # Without a tracking destination MLflow hands out no-op spans.
            writer.trace_id = span.trace_id if traced and span.trace_id != _NO_OP_TRACE_ID else None
            if traced:
                span.set_inputs(request_body)
            if stream_fn is not None:
                async for event in _iterate(stream_fn(request)):
                    if not _plain_text_delta(event):
                        event = self.validator.validate_and_convert_result(event, stream=True)
                    event = self.transform(event, rid)
                    _keep_custom_outputs(event, writer)
                    append(event)
                    await writer.wait_for_room()
            else:
                result = invoke_fn(request)
                if inspect.isawaitable(result):
                    result = await result
                result = self.validator.validate_and_convert_result(result)
                _keep_custom_outputs(result, writer)
                for item in result.get("output") or []:
                    append(self.transform({"type": "response.output_item.done", "item": item}, rid))
            for normalised in grammar.close_open():
                writer.append(normalised)
            if steps is not None:
                _log_resumed(steps, logged)
            if traced:
                span.set_attribute(SpanAttributeKey.MESSAGE_FORMAT, "openai")
                span.set_outputs({"output": writer.output_items})


def _steps_for(lease: RunLease, writer: AttemptWriter) -> AttemptSteps | None:
    """The attempt's steps, for a handler that resumes at the step (None for an unstored run)."""
    store = getattr(writer, "store", None)
    if store is None:
        return None  # an unstored run: no later attempt to resume
    prior = lease.resume.model_calls if lease.resume is not None else []
    journal = ModelCallJournal(lease.response_id, lease.attempt_number, prior, writer.record_model_call,
                               writer.journal_max_bytes)
    approvals = AttemptApprovals(lease.response_id, writer.ask_approval,
                                 lambda: store.answered_approvals(lease.response_id))
    return AttemptSteps(lease.response_id, lease.attempt_number, resumed=lease.resume is not None,
                        model_calls=journal, database=StoreCheckpointDatabase(store), approvals=approvals)


def _log_resumed(steps: AttemptSteps, logged: LoggedItems | None) -> None:
    if steps.resumed:
        journal = steps.model_calls
        replayed = (f"{journal.replayed} model call(s) replayed from the journal, {journal.recorded} recorded; "
                    if journal.replayed or journal.recorded else "")
        logger.info("%s attempt %d resumed at the step: %s%d logged item(s) not stored again", steps.response_id,
                    steps.attempt_number, replayed, logged.dropped if logged else 0)


def _keep_custom_outputs(event_or_result: dict, writer: AttemptWriter) -> None:
    """MLflow's ``custom_outputs`` (on an invoke result or a stream event) end up on the Response."""
    custom = event_or_result.get("custom_outputs")
    if isinstance(custom, dict):
        writer.custom_outputs = {**(writer.custom_outputs or {}), **custom}


def _plain_text_delta(event: Any) -> bool:
    """A text delta that MLflow's stream-event validation would accept and return unchanged.

    Text deltas come by the thousand and pydantic validation costs more than
    storing them; this exact-type check accepts a subset of what the validator
    accepts, and everything else still goes through the validator.
    """
    return (
        type(event) is dict
        and event.get("type") == "response.output_text.delta"
        and type(event.get("delta")) is str
        and type(event.get("item_id")) is str
        and type(event.get("content_index")) in _INT_OR_NONE
        and type(event.get("output_index")) in _INT_OR_NONE
        and event.get("custom_outputs") is None
    )


async def _iterate(stream) -> AsyncIterator[Any]:
    """Iterate an async or a plain generator; a plain one runs in a thread."""
    if hasattr(stream, "__aiter__"):
        async for item in stream:
            yield item
        return
    done = object()
    iterator = iter(stream)
    while (item := await asyncio.to_thread(next, iterator, done)) is not done:
        yield item
