"""The request's ``input`` in the shape each SDK takes.

Approval items (``mcp_approval_request`` / ``mcp_approval_response``) are the
client's side of a pause, not something the model said or was told: they are
left out. So is a tool call whose output never came (its approval was
declined when the conversation moved on), which a model API would refuse.
"""

from __future__ import annotations

from mlflow.types.responses import ResponsesAgentRequest, to_chat_completions_input

_APPROVAL_ITEMS = ("mcp_approval_request", "mcp_approval_response")


def input_items(request: ResponsesAgentRequest) -> list[dict]:
    """Responses input items, for the OpenAI Agents SDK."""
    items = [item.model_dump(exclude_none=True) for item in request.input]
    answered = {item.get("call_id") for item in items if item.get("type") == "function_call_output"}
    return [item for item in items if item.get("type") not in _APPROVAL_ITEMS
            and not (item.get("type") == "function_call" and item.get("call_id") not in answered)]


def chat_messages(request: ResponsesAgentRequest) -> list[dict]:
    """Chat Completions style messages, for LangChain / LangGraph."""
    return to_chat_completions_input(input_items(request))
