"""Running the registered ``@stream()`` / ``@invoke()`` handler for one attempt.

The only engine module that imports MLflow: the server imports it after
start-up (agent_runtime.py), so ``/health`` answers before MLflow is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import mlflow
from mlflow.genai.agent_server import get_invoke_function, get_stream_function, set_request_headers
from mlflow.genai.agent_server.validator import ResponsesAgentValidator
from mlflow.tracing.constant import SpanAttributeKey
from mlflow.types.responses import ResponsesAgentRequest

from .leases import RunLease
from ..events.stream_grammar import StreamGrammar
from ..memory.access import MemoryGate, attempt_memory
from ..tools.tool_calls import AttemptToolCalls, attempt_tool_calls
from .writer import AttemptWriter

# ResponsesAgentValidator is re-exported: the server builds it once MLflow is imported here.
__all__ = ["HandlerInvoker", "ResponsesAgentValidator"]

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
        calls = AttemptToolCalls(lease.response_id, lease.attempt_number, lease.prior_tool_calls,
                                 writer.record_tool_call)
        with attempt_tool_calls(calls), attempt_memory(self.memory.for_attempt(lease.owner, lease.response_id)):
            await self._run_handler(lease, writer)

    async def _run_handler(self, lease: RunLease, writer: AttemptWriter) -> None:
        """Run one attempt, one trace per attempt, recorded on the writer as soon as it starts."""
        stream_fn, invoke_fn = get_stream_function(), get_invoke_function()
        handler = stream_fn or invoke_fn
        if handler is None:
            raise RuntimeError("no @stream() or @invoke() handler is registered")
        # Validated when accepted (a conversation's history, when each turn was): built once here, not
        # validated again (MLflow's validator builds the model twice: a long history doubles its cost).
        request = ResponsesAgentRequest(**lease.request)
        if lease.history_items:  # a conversation's earlier items, parsed when the attempt started
            request.input = [*lease.history_items, *request.input]
        rid = lease.response_id
        grammar = StreamGrammar(rid, first_output_index=lease.first_output_index)
        traced = self.tracing_ready()
        with mlflow.start_span(name=handler.__name__) if traced else contextlib.nullcontext() as span:
            # Without a tracking destination MLflow hands out no-op spans.
            writer.trace_id = span.trace_id if traced and span.trace_id != _NO_OP_TRACE_ID else None
            if traced:
                span.set_inputs(lease.request)
            if stream_fn is not None:
                async for event in _iterate(stream_fn(request)):
                    if not _plain_text_delta(event):
                        event = self.validator.validate_and_convert_result(event, stream=True)
                    event = self.transform(event, rid)
                    _keep_custom_outputs(event, writer)
                    for normalised in grammar.feed(event):
                        writer.append(normalised)
                    await writer.wait_for_room()
            else:
                result = invoke_fn(request)
                if inspect.isawaitable(result):
                    result = await result
                result = self.validator.validate_and_convert_result(result)
                _keep_custom_outputs(result, writer)
                for item in result.get("output") or []:
                    event = self.transform({"type": "response.output_item.done", "item": item}, rid)
                    for normalised in grammar.feed(event):
                        writer.append(normalised)
            for normalised in grammar.close_open():
                writer.append(normalised)
            if traced:
                span.set_attribute(SpanAttributeKey.MESSAGE_FORMAT, "openai")
                span.set_outputs({"output": writer.output_items})


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
