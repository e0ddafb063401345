"""The offline model as an OpenAI Agents SDK ``Model``.

It emits the same Responses stream events a real model does (item added,
text deltas, item done, ``response.completed``), so the SDK runs its normal
loop: a function call item makes the Runner execute the tool and call the
model again with the result.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from agents import Model, ModelResponse, Usage
from agents.models.fake_id import FAKE_RESPONSES_ID
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
)

from ..message_text import text_of
from ..model_choice import OFFLINE_MODEL_NAME, token_delay_seconds
from .script import TextReply, Turn, plan_reply, split_tokens


def _as_dict(item: Any) -> dict:
    return item if isinstance(item, dict) else item.model_dump(exclude_none=True)


def turns_from_items(input: str | list[Any]) -> list[Turn]:
    """Responses input items (what the SDK hands a model) as script turns."""
    if isinstance(input, str):
        return [Turn("user", input)]
    turns: list[Turn] = []
    tool_names: dict[str, str] = {}
    for raw in input:
        item = _as_dict(raw)
        kind = item.get("type")
        if kind == "function_call":
            tool_names[item.get("call_id", "")] = item.get("name", "")
        elif kind == "function_call_output":
            output = item.get("output")
            # MCP tools return content blocks; their text is the result.
            text = output if isinstance(output, str) else (text_of(output) or json.dumps(output))
            turns.append(Turn("tool", text, tool_names.get(item.get("call_id", ""))))
        elif item.get("role") in ("user", "assistant"):
            turns.append(Turn(item["role"], text_of(item.get("content"))))
    return turns


class OfflineAgentsModel(Model):
    """Deterministic, network-free ``agents.Model`` that really calls tools.

    ``token_delay`` is the pause between streamed tokens (default from
    ``OFFLINE_MODEL_TOKEN_DELAY_SECONDS``).
    """

    def __init__(self, token_delay: float | None = None):
        self.token_delay = token_delay_seconds() if token_delay is None else token_delay

    def _output_item(self, input, tools) -> ResponseOutputMessage | ResponseFunctionToolCall:
        plan = plan_reply(turns_from_items(input), [tool.name for tool in tools])
        if isinstance(plan, TextReply):
            return ResponseOutputMessage(
                id=FAKE_RESPONSES_ID, type="message", role="assistant", status="completed",
                content=[ResponseOutputText(type="output_text", text=plan.text, annotations=[], logprobs=[])],
            )
        return ResponseFunctionToolCall(
            id=FAKE_RESPONSES_ID, type="function_call", status="completed",
            call_id=f"call_{uuid.uuid4().hex[:24]}", name=plan.name, arguments=json.dumps(plan.arguments),
        )

    @staticmethod
    def _response(output: list, status: str = "completed") -> Response:
        return Response(
            id=FAKE_RESPONSES_ID, created_at=time.time(), model=OFFLINE_MODEL_NAME, object="response",
            output=output, parallel_tool_calls=False, tool_choice="auto", tools=[], status=status,
        )

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                           tracing, *, previous_response_id=None, conversation_id=None, prompt=None,
                           **_kwargs) -> ModelResponse:
        item = self._output_item(input, tools)
        return ModelResponse(output=[item], usage=Usage(requests=1), response_id=None)

    async def stream_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                              tracing, *, previous_response_id=None, conversation_id=None, prompt=None,
                              **_kwargs) -> AsyncIterator:
        item = self._output_item(input, tools)
        seq = iter(range(1_000_000))
        yield ResponseCreatedEvent(type="response.created", response=self._response([], "in_progress"),
                                   sequence_number=next(seq))
        if isinstance(item, ResponseOutputMessage):
            yield ResponseOutputItemAddedEvent(
                type="response.output_item.added", output_index=0, sequence_number=next(seq),
                item=item.model_copy(update={"content": [], "status": "in_progress"}),
            )
            for token in split_tokens(item.content[0].text):
                await asyncio.sleep(self.token_delay)
                yield ResponseTextDeltaEvent(
                    type="response.output_text.delta", item_id=item.id, output_index=0, content_index=0,
                    delta=token, logprobs=[], sequence_number=next(seq),
                )
        else:
            yield ResponseOutputItemAddedEvent(
                type="response.output_item.added", output_index=0, sequence_number=next(seq),
                item=item.model_copy(update={"arguments": "", "status": "in_progress"}),
            )
            await asyncio.sleep(self.token_delay)
            yield ResponseFunctionCallArgumentsDeltaEvent(
                type="response.function_call_arguments.delta", item_id=item.id, output_index=0,
                delta=item.arguments, sequence_number=next(seq),
            )
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", output_index=0, item=item,
                                          sequence_number=next(seq))
        yield ResponseCompletedEvent(type="response.completed", response=self._response([item]),
                                     sequence_number=next(seq))
