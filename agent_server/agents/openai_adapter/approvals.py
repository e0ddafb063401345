"""Approvals in the OpenAI Agents SDK variant: the SDK's interruptions as requests, and the run resumed.

A tool with ``needs_approval`` makes ``Runner.run_streamed`` stop with
``result.interruptions``: each becomes a request (``mcp_approval_request``
item) stored with the run's serialised ``RunState``, on the server only. The
response that answers them loads that state (``RunState.from_string``),
approves or rejects each interruption (a rejection's reason is what the
model is told) and runs on from it, in whichever worker runs it.
"""

from __future__ import annotations

from typing import Any

from agents import Agent
from agents.run_state import RunState

from agent_server.long_running.journal.approvals import AGENT_LABEL
from agent_server.long_running.journal.steps import AttemptSteps
from agent_server.utils import FAKE_RESPONSES_ID

from ..common.approval import not_approved


async def resumed_state(agent: Agent, steps: AttemptSteps) -> RunState | None:
    """The paused run this response answers, with each interruption approved or rejected (None: it
    answers none)."""
    answered = await steps.approvals.answered()
    if not any(answer.status in ("approved", "rejected") for answer in answered):
        return None  # a new message that only declined what waited: the run starts afresh
    state = await RunState.from_string(agent, answered[0].state)
    by_call = {answer.call_id: answer for answer in answered}
    for item in state.get_interruptions():
        answer = by_call.get(item.raw_item.call_id)
        if answer is not None and answer.approved:
            state.approve(item)
        else:
            state.reject(item, rejection_message=not_approved(answer.status if answer else "declined",
                                                               answer.reason if answer else None))
    return state


def _label(item: Any) -> str:
    origin = getattr(item, "tool_origin", None)
    return getattr(origin, "mcp_server_name", None) or AGENT_LABEL


async def approval_events(result: Any, steps: AttemptSteps | None) -> list[dict]:
    """The run stopped for approvals: store each request (with the run's state); their output items."""
    if steps is None:
        text = not_approved("unstored", None, ", ".join(sorted({item.tool_name for item in result.interruptions})))
        return [{"type": "response.output_item.done", "item": {
            "type": "message", "id": FAKE_RESPONSES_ID, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}}]
    state = result.to_state().to_string()
    events = []
    for item in result.interruptions:
        request = await steps.approvals.ask(name=item.tool_name or item.raw_item.name,
                                            arguments=item.raw_item.arguments, call_id=item.raw_item.call_id,
                                            state=state, server_label=_label(item))
        events.append({"type": "response.output_item.done", "item": request})
    return events
