"""Recovery and sweeps: claiming runs whose owner died, failing runs past their
time-out, and what a resumed attempt is given: for a handler that resumes at
the step (journal/steps.py), the original request, the journal of model calls
and the items already logged; for any other handler, the original request
plus the tool calls earlier attempts finished as input items and a recovery
message built from the previous attempts' events, with a rotated conversation id.

Kept compatible with databricks-ai-bridge: the message is one user message
starting with ``[RECOVERY]`` whose body carries the prior attempt's events as
JSON, and the conversation id becomes ``{base}::attempt-N`` so the agent SDK
resolves a fresh session instead of one left half-written by the crash.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from .attempt import timed_out_error
from ..conversations.turns import HistoryRef
from .leases import ResumePoint, RunLease
from ..journal.logged_items import completed_items
from ..storage.models import ResponseRow, Status
from ..settings import EngineSettings
from ..storage.store import Store
from ..events.response_object import terminal_event_data
from ..events.stream_grammar import Seam, seam_after
from ..storage.models import RecordedToolCall
from ..tools.tool_calls import resume_input_items

logger = logging.getLogger(__name__)

# Events the server writes itself; the handler never produced them.
_SERVER_EVENTS = {"response.created", "response.in_progress", "response.resumed"}
_LOG_FIELDS = ("sequence_number", "response_id")


def recovery_message(prior_events: list[str], finished_tool_calls: bool = False) -> dict[str, Any]:
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
        + ("The tool calls that finished are in the input above, each with its output; calling one "
           "again with the same arguments returns that output instead of running the tool again "
           "(unless the tool must always run).\n\n"
           if finished_tool_calls else "")
        + f"Events:\n{json.dumps(events)}"
    )
    return {"type": "message", "role": "user", "content": body}


def resume_request(
    original: dict[str, Any], prior_events: list[str], attempt_number: int, response_id: str,
    tool_calls: Sequence[RecordedToolCall] = (),
) -> tuple[dict[str, Any], str]:
    """The request for attempt ``attempt_number`` and its rotated conversation id.

    Its input is the original input, then each finished tool call (a function
    call and its output), then the ``[RECOVERY]`` message.
    """
    request = copy.deepcopy(original)
    request["input"] = [*(request.get("input") or []), *resume_input_items(tool_calls),
                        recovery_message(prior_events, finished_tool_calls=bool(tool_calls))]
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


def lease_for(row: ResponseRow, request: dict[str, Any], headers: dict[str, str], conversation_id: str | None,
              task_timeout_seconds: float, seam: Seam | None = None) -> RunLease:
    """The lease of the attempt a claim just gave this worker."""
    started = (row.started_at or row.created_at).timestamp()
    return RunLease(
        metadata=row.request.get("metadata") or {},
        background=row.background,
        first_output_index=seam.next_output_index if seam else 0,
        seam_events=seam.closing_events if seam else [],
        response_id=row.response_id,
        attempt_number=row.attempt_number,
        request=request,
        headers=headers,
        created_at=row.created_at.timestamp(),
        deadline=started + task_timeout_seconds,
        model=row.model,
        next_sequence=row.last_sequence + 1,
        owner=row.owner,
        conversation_id=conversation_id,
        history=history_of(row),
    )


def history_of(row: ResponseRow) -> HistoryRef | None:
    """The conversation items every attempt of ``row`` sees (fixed when its first attempt started)."""
    if row.conversation_id is None or row.history_end is None:
        return None
    return HistoryRef(row.conversation_id, row.history_end)


async def claim_stale_runs(store: Store, worker_id: str, settings: EngineSettings, limit: int,
                           own_running: Sequence[str], dead_owners: bool = False) -> list[ResponseRow]:
    """Take over up to ``limit`` runs whose owner stopped heartbeating (or, with
    ``dead_owners``, whose owner's liveness lock is free: see ``liveness.py``)."""
    return await store.claim_stale(
        worker_id,
        stale_seconds=settings.heartbeat_stale_threshold_seconds,
        timeout_seconds=settings.task_timeout_seconds,
        limit=limit,
        own_running=own_running,
        dead_owners=dead_owners,
    )


async def resumed_lease(store: Store, row: ResponseRow, settings: EngineSettings) -> RunLease:
    """The next attempt on a claimed run: its request carries what the earlier attempts did."""
    prior = await store.prior_events(row.response_id, row.attempt_number)
    tool_calls = await store.recorded_tool_calls(row.response_id)
    request, conversation_id = resume_request(row.request, prior, row.attempt_number, row.response_id, tool_calls)
    logger.info("Claimed stale %s: resuming as attempt %d", row.response_id, row.attempt_number)
    lease = lease_for(row, request, dict(row.request_headers), conversation_id, settings.task_timeout_seconds,
                      seam_after(prior, row.response_id))
    lease.prior_tool_calls = tool_calls
    lease.resume = ResumePoint(original_request=row.request, logged_items=completed_items(prior),
                               model_calls=await store.recorded_model_calls(row.response_id))
    return lease


async def fail_timed_out_runs(store: Store, task_timeout_seconds: float) -> None:
    """Fail runs past the task time-out even when their owner is gone."""
    for rid in await store.timed_out_runs(task_timeout_seconds):
        row = await store.finalize(rid, status=Status.FAILED, error=timed_out_error(task_timeout_seconds),
                                   terminal_event=terminal_event_data)
        if row is not None:
            logger.warning("Failed %s: past task_timeout_seconds", rid)


class RetentionSweep:
    """Deletes finished responses past the retention period, and the LangGraph checkpoints of
    responses that ended (only an unfinished run resumes from them), at most once a minute."""

    INTERVAL_SECONDS = 60.0

    def __init__(self, store: Store, retention_seconds: float):
        self.store = store
        self.retention_seconds = retention_seconds
        self._last = 0.0

    async def maybe_run(self) -> None:
        if time.monotonic() - self._last > self.INTERVAL_SECONDS:
            await self.store.delete_expired(self.retention_seconds)
            await self.store.delete_expired_conversations(self.retention_seconds)
            await self.store.delete_ended_checkpoints()
            self._last = time.monotonic()
