"""What a resumed attempt is given: the original request, a recovery message
built from the previous attempt's events, and a rotated conversation id.

Kept compatible with databricks-ai-bridge: the message is one user message
starting with ``[RECOVERY]`` whose body carries the prior attempt's events as
JSON, and the conversation id becomes ``{base}::attempt-N`` so the agent SDK
resolves a fresh session instead of one left half-written by the crash.
"""

from __future__ import annotations

import copy
import json
from typing import Any

# Events the server writes itself; the handler never produced them.
_SERVER_EVENTS = {"response.created", "response.resumed"}
_LOG_FIELDS = ("sequence_number", "response_id")


def recovery_message(prior_events: list[str]) -> dict[str, Any]:
    """One user message describing what the crashed attempt had done."""
    events = []
    for data in prior_events:
        event = json.loads(data)
        if event.get("type") in _SERVER_EVENTS:
            continue
        for key in _LOG_FIELDS:
            event.pop(key, None)
        events.append(event)
    body = (
        "[RECOVERY] The previous attempt at this task stopped before it finished "
        "(its worker crashed or was restarted). Below are the events it produced, "
        "as JSON. Work out which steps completed and which were interrupted, then "
        "continue the task from there. Re-run an interrupted tool call only if you "
        "still need its result.\n\n"
        f"Events:\n{json.dumps(events)}"
    )
    return {"type": "message", "role": "user", "content": body}


def resume_request(
    original: dict[str, Any], prior_events: list[str], attempt_number: int, response_id: str
) -> tuple[dict[str, Any], str]:
    """The request for attempt ``attempt_number`` and its rotated conversation id."""
    request = copy.deepcopy(original)
    request["input"] = [*(request.get("input") or []), recovery_message(prior_events)]
    custom_inputs = dict(request.get("custom_inputs") or {})
    context = dict(request.get("context") or {})
    base = (
        custom_inputs.pop("thread_id", None)
        or custom_inputs.pop("session_id", None)
        or context.get("conversation_id")
        or response_id
    )
    # Both are dropped so the handler cannot fall back to the crashed session.
    custom_inputs.pop("thread_id", None)
    custom_inputs.pop("session_id", None)
    conversation_id = f"{base}::attempt-{attempt_number}"
    context["conversation_id"] = conversation_id
    request["custom_inputs"] = custom_inputs
    request["context"] = context
    return request, conversation_id
