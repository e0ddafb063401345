"""The offline model as a LangChain chat model.

Streams ``AIMessageChunk`` tokens (so LangGraph's ``messages`` stream mode
sees them) and answers with ``tool_calls`` for the tools bound with
:meth:`OfflineChatModel.bind_tools`, so a tool-calling graph runs as usual.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from ..message_text import text_of
from ..model_choice import OFFLINE_MODEL_NAME, token_delay_seconds
from .script import Plan, TextReply, Turn, plan_reply, split_tokens


def turns_from_messages(messages: Sequence[BaseMessage]) -> list[Turn]:
    """LangChain messages as script turns."""
    turns: list[Turn] = []
    tool_names: dict[str, str] = {}
    for message in messages:
        if isinstance(message, HumanMessage):
            turns.append(Turn("user", text_of(message.content)))
        elif isinstance(message, AIMessage):
            for call in message.tool_calls:
                tool_names[call.get("id") or ""] = call["name"]
            turns.append(Turn("assistant", text_of(message.content)))
        elif isinstance(message, ToolMessage):
            name = message.name or tool_names.get(message.tool_call_id)
            turns.append(Turn("tool", text_of(message.content), name))
    return turns


class OfflineChatModel(BaseChatModel):
    """Deterministic, network-free LangChain chat model that really calls tools.

    ``token_delay`` is the pause between streamed tokens (default from
    ``OFFLINE_MODEL_TOKEN_DELAY_SECONDS``).
    """

    token_delay: float = Field(default_factory=token_delay_seconds)

    @property
    def _llm_type(self) -> str:
        return OFFLINE_MODEL_NAME

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any):
        """Make ``tools`` available to the model (OpenAI tool schema, as real chat models do)."""
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _plan(self, messages: list[BaseMessage], tools: list[dict] | None) -> Plan:
        names = [tool["function"]["name"] for tool in tools or []]
        return plan_reply(turns_from_messages(messages), names)

    @staticmethod
    def _tool_call_id() -> str:
        return f"call_{uuid.uuid4().hex[:24]}"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        plan = self._plan(messages, kwargs.get("tools"))
        if isinstance(plan, TextReply):
            message = AIMessage(content=plan.text)
        else:
            message = AIMessage(content="", tool_calls=[
                {"name": plan.name, "args": plan.arguments, "id": self._tool_call_id(), "type": "tool_call"}
            ])
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunks(self, plan: Plan) -> Iterator[AIMessageChunk]:
        if isinstance(plan, TextReply):
            for token in split_tokens(plan.text):
                yield AIMessageChunk(content=token)
        else:
            yield AIMessageChunk(content="", tool_call_chunks=[{
                "name": plan.name, "args": json.dumps(plan.arguments), "id": self._tool_call_id(),
                "index": 0, "type": "tool_call_chunk",
            }])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._plan(messages, kwargs.get("tools"))):
            time.sleep(self.token_delay)
            generation = ChatGenerationChunk(message=chunk)
            if run_manager:
                run_manager.on_llm_new_token(text_of(chunk.content), chunk=generation)
            yield generation

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._plan(messages, kwargs.get("tools"))):
            await asyncio.sleep(self.token_delay)
            generation = ChatGenerationChunk(message=chunk)
            if run_manager:
                await run_manager.on_llm_new_token(text_of(chunk.content), chunk=generation)
            yield generation
