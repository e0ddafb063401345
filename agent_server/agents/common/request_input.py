"""The request's ``input`` in the shape each SDK takes."""

from __future__ import annotations

from mlflow.types.responses import ResponsesAgentRequest, to_chat_completions_input


def input_items(request: ResponsesAgentRequest) -> list[dict]:
    """Responses input items, for the OpenAI Agents SDK."""
    return [item.model_dump(exclude_none=True) for item in request.input]


def chat_messages(request: ResponsesAgentRequest) -> list[dict]:
    """Chat Completions style messages, for LangChain / LangGraph."""
    return to_chat_completions_input(input_items(request))
