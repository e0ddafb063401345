"""A model whose finished calls go in the response's journal, and are replayed from it on a resumed attempt.

:class:`JournaledModel` wraps any Agents SDK ``Model`` (a Databricks serving
endpoint through ``OpenAIChatCompletionsModel``, the offline model, a model a
provider returns). In a server run of a handler that resumes at the step it
asks the attempt's journal (``agent_server/long_running/journal/``) before
each call: a recorded call with the same input is answered from the record
(``get_response``: its ``ModelResponse``; ``stream_response``: an
``output_item.done`` per item and ``response.completed``, no text deltas,
no tokens spent); otherwise the model is called and its finished result is
recorded before the SDK acts on it. Anywhere else it is the wrapped model.

The input digest covers what decides the model's answer: the instructions,
the input items, the tools' and handoffs' names and schemas, the output
schema. A recorded result is its output items (as the SDK built them, so the
next call's input is the same as in the first attempt) and its usage.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from agents import Model, ModelProvider, ModelResponse, Usage
from agents.models.fake_id import FAKE_RESPONSES_ID
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseOutputItem,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
)
from pydantic import TypeAdapter

from agent_server.long_running.journal.model_calls import ModelCallJournal, ModelCallStep, input_digest
from agent_server.long_running.journal.steps import current_steps

_OUTPUT_ITEM = TypeAdapter(ResponseOutputItem)


def _journal() -> ModelCallJournal | None:
    steps = current_steps()
    return steps.model_calls if steps is not None else None


def _named(things: list[Any]) -> list[Any]:
    """Tools and handoffs as what the model is told about them."""
    return [
        {"name": getattr(thing, "name", None) or getattr(thing, "tool_name", None) or type(thing).__name__,
         "schema": getattr(thing, "params_json_schema", None) or getattr(thing, "input_json_schema", None)}
        for thing in things or ()
    ]


def call_digest(system_instructions: str | None, input: Any, tools: list[Any], output_schema: Any,
                handoffs: list[Any]) -> str:
    schema = output_schema.json_schema() if output_schema is not None and not output_schema.is_plain_text() else None
    return input_digest({"instructions": system_instructions, "input": input, "tools": _named(tools),
                         "handoffs": _named(handoffs), "output_schema": schema})


def _usage_of(usage: Any) -> dict[str, int]:
    return {name: int(getattr(usage, name, 0) or 0) for name in ("input_tokens", "output_tokens", "total_tokens")}


def recorded_result(output: list[Any], usage: Any, response_id: str | None) -> str:
    """What the journal stores of a finished call: the output items as the SDK built them (only the
    fields that were set, so they become the same input again), its usage and response id."""
    return json.dumps({
        "output": [item.model_dump(mode="json", exclude_unset=True) for item in output],
        "usage": _usage_of(usage) if usage is not None else None,
        "response_id": response_id,
    })


def replayed_output(result: str) -> list[Any]:
    return [_OUTPUT_ITEM.validate_python(item) for item in json.loads(result)["output"]]


def replayed_events(result: str) -> list[Any]:
    """A recorded call as a stream: each item added and done, then the response completed (no usage:
    nothing was spent)."""
    output = replayed_output(result)
    events: list[Any] = []
    for index, item in enumerate(output):
        events.append(ResponseOutputItemAddedEvent(type="response.output_item.added", output_index=index,
                                                   item=item, sequence_number=len(events)))
        events.append(ResponseOutputItemDoneEvent(type="response.output_item.done", output_index=index,
                                                  item=item, sequence_number=len(events)))
    response = Response(id=json.loads(result).get("response_id") or FAKE_RESPONSES_ID, created_at=time.time(),
                        model="journal", object="response", output=output, parallel_tool_calls=False,
                        tool_choice="auto", tools=[], status="completed")
    events.append(ResponseCompletedEvent(type="response.completed", response=response,
                                         sequence_number=len(events)))
    return events


class JournaledModel(Model):
    """``model``, with its finished calls recorded in (and replayed from) the response's journal."""

    def __init__(self, model: Model):
        self.model = model

    def _step(self, system_instructions, input, tools, output_schema, handoffs
              ) -> tuple[ModelCallJournal | None, ModelCallStep | None]:
        journal = _journal()
        if journal is None:
            return None, None
        return journal, journal.next_call(call_digest(system_instructions, input, tools, output_schema, handoffs))

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                           tracing, **kwargs) -> ModelResponse:
        journal, step = self._step(system_instructions, input, tools, output_schema, handoffs)
        if step is not None and step.replay is not None:
            recorded = json.loads(step.replay)
            return ModelResponse(output=replayed_output(step.replay), usage=Usage(),
                                 response_id=recorded.get("response_id"))
        response = await self.model.get_response(system_instructions, input, model_settings, tools, output_schema,
                                                 handoffs, tracing, **kwargs)
        if journal is not None:
            await journal.record(step, recorded_result(response.output, response.usage, response.response_id))
        return response

    async def stream_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                              tracing, **kwargs) -> AsyncIterator[Any]:
        journal, step = self._step(system_instructions, input, tools, output_schema, handoffs)
        if step is not None and step.replay is not None:
            for event in replayed_events(step.replay):
                yield event
            return
        done_items: list[Any] = []
        async for event in self.model.stream_response(system_instructions, input, model_settings, tools,
                                                      output_schema, handoffs, tracing, **kwargs):
            if journal is not None:
                if isinstance(event, ResponseOutputItemDoneEvent):
                    done_items.append(event.item)
                elif isinstance(event, ResponseCompletedEvent):
                    # Recorded before the SDK sees the end of the call (and runs its tools).
                    final = event.response
                    await journal.record(step, recorded_result(final.output or done_items, final.usage, final.id))
            yield event

    def get_retry_advice(self, request):
        return self.model.get_retry_advice(request)

    async def close(self) -> None:
        await self.model.close()


class JournalingModelProvider(ModelProvider):
    """``provider``'s models, journaled (for agents that name their model instead of holding one)."""

    def __init__(self, provider: ModelProvider):
        self.provider = provider

    def get_model(self, model_name: str | None) -> Model:
        return JournaledModel(self.provider.get_model(model_name))

    async def aclose(self) -> None:
        await self.provider.aclose()
