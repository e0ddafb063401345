"""Row types and statuses, matching the SQL in ``sql/``."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple


class Status(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INCOMPLETE = "incomplete"

    @property
    def is_terminal(self) -> bool:
        return self not in (Status.QUEUED, Status.IN_PROGRESS)

    @property
    def terminal_event_type(self) -> str:
        return f"response.{self.value}"


TERMINAL_EVENT_TYPES = frozenset(s.terminal_event_type for s in Status if s.is_terminal)


@dataclass(frozen=True)
class ResponseRow:
    """One row of ``responses`` plus the number of its last stored event."""

    response_id: str
    owner: str
    status: Status
    attempt_number: int
    worker_id: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    request: dict[str, Any]
    request_headers: dict[str, str]
    model: str
    output: list[dict[str, Any]] | None
    error: dict[str, Any] | None
    trace_id: str | None
    watched_until: datetime | None  # a tail in another process wants NOTIFYs until then
    background: bool = True  # False: a standard request, stored so it can be retrieved
    custom_outputs: dict[str, Any] | None = None
    conversation_id: str | None = None  # the stored conversation this turn joins when it ends
    history_end: int | None = None  # how many of its items the handler sees (set when it first starts)
    # Number of its last stored event. Statements that lock the row leave it out (their
    # snapshot may predate a batch committed just before the lock) and the store reads it
    # in a new statement; -1 until then.
    last_sequence: int = -1

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "ResponseRow":
        # Columns this version does not know are ignored: during a rolling deploy a newer
        # worker may already have migrated the table (rows are read with ``r.*``).
        known = {k: v for k, v in record.items() if k in _ROW_FIELDS}
        return cls(**{**known, "status": Status(record["status"])})


@dataclass(frozen=True)
class ResponseSummary:
    """One row of an owner's list of responses: no output, a preview of the last input."""

    response_id: str
    status: Status
    attempt_number: int
    model: str
    error: dict[str, Any] | None
    incomplete_details: dict[str, Any] | None
    trace_id: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float
    input_preview: str | None
    pending_approvals: int = 0  # requests it asked that wait for an answer

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "ResponseSummary":
        return cls(**{**record, "status": Status(record["status"])})


class StoredEvent(NamedTuple):
    """One row of ``events``; a tuple, since one is built per event and per tail that reads it."""

    sequence_number: int
    type: str
    data: str  # the exact JSON of the SSE frame

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENT_TYPES


@dataclass(frozen=True)
class ConversationRow:
    """One row of ``conversations``."""

    conversation_id: str
    owner: str
    session_key: str | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    item_count: int
    last_response_id: str | None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "ConversationRow":
        return cls(**{k: v for k, v in record.items() if k in _CONVERSATION_FIELDS})


@dataclass(frozen=True)
class MemoryRow:
    """One row of ``memories``: a fact the agent keeps about its owner across conversations."""

    memory_id: str
    owner: str
    text: str
    created_at: datetime
    response_id: str | None  # the response whose tool call saved it (it may since be deleted)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "MemoryRow":
        return cls(**{k: v for k, v in record.items() if k in _MEMORY_FIELDS})


_ROW_FIELDS = frozenset(f.name for f in fields(ResponseRow))
_CONVERSATION_FIELDS = frozenset(f.name for f in fields(ConversationRow))
_MEMORY_FIELDS = frozenset(f.name for f in fields(MemoryRow))


@dataclass(frozen=True)
class RecordedToolCall:
    """One finished tool call, as stored in ``tool_calls``."""

    key: str
    name: str
    arguments: dict[str, Any]
    output: Any  # what the tool returned, as JSON (see as_json)
    call_id: str
    attempt_number: int

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RecordedToolCall:
        return cls(key=record["call_key"], name=record["name"], arguments=record["arguments"],
                   output=record["output"], call_id=record["call_id"], attempt_number=record["attempt_number"])

    def input_items(self) -> list[dict[str, Any]]:
        """The call and its output as OpenAI Responses input items (matching call ids)."""
        output = self.output if isinstance(self.output, str) else json.dumps(self.output)
        return [
            {"type": "function_call", "call_id": self.call_id, "name": self.name,
             "arguments": json.dumps(self.arguments)},
            {"type": "function_call_output", "call_id": self.call_id, "output": output},
        ]


class WebhookDeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # still not delivered when the retry horizon passed
    STOPPED = "stopped"  # its receiver answered 410 Gone


@dataclass(frozen=True)
class WebhookDelivery:
    """One claimed delivery of a webhook event to one receiver URL (``webhook_deliveries``)."""

    delivery_id: int
    event_id: str  # evt_…: the body's id and the webhook-id header, the same on every attempt
    url: str
    type: str  # response.completed, …
    response_id: str
    attempts: int  # this one included: the claim's token
    created_at: int  # Unix seconds: when the response ended


@dataclass(frozen=True)
class WebhookOutcome:
    """What one claimed send came to: delivered, or to be tried again ``retry_after`` seconds on."""

    delivery_id: int
    attempts: int  # the claim it belongs to (a failure reported by an older claim changes nothing)
    delivered: bool
    retry_after: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class WebhookRecorded:
    """A delivery as an outcome left it (``status`` says whether it is done)."""

    delivery_id: int
    event_id: str
    url: str
    type: str
    response_id: str
    attempts: int
    status: WebhookDeliveryStatus
    last_error: str | None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "WebhookRecorded":
        return cls(**{**record, "status": WebhookDeliveryStatus(record["status"])})


@dataclass(frozen=True)
class WebhookBacklog:
    """Deliveries to the configured receivers not made yet (``/health``)."""

    pending: int
    failing: int  # of those, how many failed at least once
    oldest_seconds: float | None  # the oldest one's age; None when there are none
    stopped_urls: int  # configured receivers a 410 stopped


@dataclass(frozen=True)
class RecordedModelCall:
    """One finished model call, as stored in ``model_calls`` (the journal a resumed attempt replays)."""

    position: int  # 0 for the run's first model call
    attempt_number: int
    input_digest: str
    result: str  # the JSON the SDK adapter recorded
    size: int  # bytes of ``result``

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RecordedModelCall:
        return cls(**{f.name: record[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class ApprovalAnswer:
    """One ``mcp_approval_response`` input item: the answer to a request of the response continued."""

    request_id: str
    approve: bool
    reason: str | None = None


@dataclass(frozen=True)
class AnsweredApproval:
    """A request a response answered (or declined by moving its conversation on), as stored in
    ``approvals``: what that response's run resumes the paused run with."""

    request_id: str
    response_id: str  # the response that asked
    name: str
    arguments: str
    server_label: str
    call_id: str
    state: str  # the SDK adapter's paused run
    thread_id: str | None
    status: str  # approved | rejected | declined
    reason: str | None

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AnsweredApproval:
        return cls(**{f.name: record[f.name] for f in fields(cls)})
