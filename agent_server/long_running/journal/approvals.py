"""Tool calls that wait for a person: asking (the run's response then completes), and the answers
a later response resumes the paused run with.

An SDK adapter whose run paused on tools that need approval asks here for
each call: the request is stored with what the adapter needs to resume the
run (its paused state, server side only) and the ``mcp_approval_request``
output item to show comes back. Nothing is held while the request waits: the
response completes, and the run is resumed by whichever worker runs the
response that answers (``previous_response_id`` and ``mcp_approval_response``
input items, claimed when that response is stored, see ``storage/store.py``).
That response's attempts find the answers in :meth:`AttemptApprovals.answered`.

A request id is derived from the response and the SDK's call id, so a
resumed attempt that pauses on the same call asks for the same request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..storage.models import AnsweredApproval

#: ``ask(request_id, fields)``: stores one request durably.
Ask = Callable[[str, dict[str, Any]], Awaitable[None]]
#: ``answered()``: the requests the attempt's response answered or declined.
Answered = Callable[[], Awaitable[list[AnsweredApproval]]]

#: Who asks for a tool of the agent's own (an MCP tool's request names its server instead).
AGENT_LABEL = "agent"


def approval_request_id(response_id: str, call_id: str) -> str:
    return "mcpr_" + hashlib.sha256(f"{response_id}:{call_id}".encode()).hexdigest()[:32]


class AttemptApprovals:
    """One attempt's requests for approval and the answers it resumes with."""

    def __init__(self, response_id: str, ask: Ask, answered: Answered):
        self.response_id = response_id
        self._ask = ask
        self._answered = answered
        self._answers: list[AnsweredApproval] | None = None

    async def ask(self, *, name: str, arguments: str, call_id: str, state: str, server_label: str = AGENT_LABEL,
                  thread_id: str | None = None) -> dict[str, Any]:
        """Store a request for the call ``call_id`` (committed before it returns); its output item."""
        request_id = approval_request_id(self.response_id, call_id)
        await self._ask(request_id, {"name": name, "arguments": arguments, "server_label": server_label,
                                     "call_id": call_id, "state": state, "thread_id": thread_id})
        return {"type": "mcp_approval_request", "id": request_id, "name": name, "arguments": arguments,
                "server_label": server_label}

    async def answered(self) -> list[AnsweredApproval]:
        """The requests this response answered or declined (empty: it continues no paused run)."""
        if self._answers is None:
            self._answers = await self._answered()
        return self._answers
