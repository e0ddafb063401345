"""The attempts running in this worker process, by response id.

Shared by the worker, which starts and stops them, and the tail, which needs
no NOTIFY for a response whose writer is in this process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..conversations.turns import HistoryRef
from ..storage.models import RecordedModelCall, RecordedToolCall


@dataclass
class ResumePoint:
    """Where a resumed attempt of a handler that resumes at the step (journal/steps.py) starts from."""

    original_request: dict[str, Any]  # as first accepted: the replay needs the same input
    logged_items: list[dict[str, Any]]  # the output items earlier attempts completed, in log order
    model_calls: list[RecordedModelCall]  # the journal of model calls, in run order


@dataclass
class RunLease:
    """One attempt this worker owns."""

    response_id: str
    attempt_number: int
    request: dict[str, Any]  # as the handler receives it (resume-adjusted)
    headers: dict[str, str]  # what get_request_headers() returns during the attempt
    created_at: float
    deadline: float  # wall-clock time the task times out
    model: str
    next_sequence: int
    owner: str  # the identity the response belongs to (its memory is this identity's)
    conversation_id: str | None = None  # set on resumed attempts
    metadata: dict[str, str] = field(default_factory=dict)  # the request's, echoed on the Response
    background: bool = True  # False: a standard request, run (and stored) the same way
    # Output items are numbered across the whole log: a resumed attempt continues
    # after the indices earlier attempts used, and first closes the items they left open.
    first_output_index: int = 0
    seam_events: list[dict[str, Any]] = field(default_factory=list)
    # The tool calls earlier attempts finished: served again instead of run again.
    prior_tool_calls: list[RecordedToolCall] = field(default_factory=list)
    # Set on resumed attempts: a handler that resumes at the step uses it instead of ``request``.
    resume: ResumePoint | None = None
    # A conversation turn: its history, read when the attempt starts (parsed items), goes before
    # ``request["input"]`` in the handler's request.
    history: HistoryRef | None = None
    history_items: list[Any] = field(default_factory=list)

    @classmethod
    def first_attempt(cls, *, response_id: str, request: dict[str, Any], headers: dict[str, str], owner: str,
                      created_at: float, task_timeout_seconds: float, model: str, background: bool,
                      next_sequence: int, history: HistoryRef | None = None) -> RunLease:
        """The lease of a new response's first attempt, which starts now."""
        return cls(response_id=response_id, attempt_number=1, request=request, headers=headers, owner=owner,
                   created_at=created_at, deadline=time.time() + task_timeout_seconds, model=model,
                   next_sequence=next_sequence, metadata=request.get("metadata") or {}, background=background,
                   history=history)


@dataclass
class RunningAttempt:
    lease: RunLease
    task: asyncio.Task
    stop_reason: str | None = None


class LocalAttempts:
    def __init__(self) -> None:
        self._by_response: dict[str, RunningAttempt] = {}

    def __contains__(self, response_id: str) -> bool:
        return response_id in self._by_response

    def __len__(self) -> int:
        return len(self._by_response)

    def __iter__(self) -> Iterator[RunningAttempt]:
        return iter(list(self._by_response.values()))

    def get(self, response_id: str) -> RunningAttempt | None:
        return self._by_response.get(response_id)

    def add(self, running: RunningAttempt) -> None:
        self._by_response[running.lease.response_id] = running

    def remove(self, running: RunningAttempt) -> None:
        """Forget ``running`` (not a newer attempt on the same response)."""
        if self._by_response.get(running.lease.response_id) is running:
            del self._by_response[running.lease.response_id]

    def response_ids(self) -> list[str]:
        return list(self._by_response)

    def leases(self) -> list[tuple[str, int]]:
        return [(r.lease.response_id, r.lease.attempt_number) for r in self._by_response.values()]
