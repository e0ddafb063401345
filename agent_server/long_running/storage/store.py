"""Typed calls over the named SQL in ``sql/queries.sql``.

Each method runs one named statement (or, for decisions made outside a run's
owner, one short transaction) and returns rows as dataclasses.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from psycopg.types.json import Jsonb

from .bounded import Deadline
from .database import Database
from .models import (AnsweredApproval, ApprovalAnswer, ConversationRow, MemoryRow, RecordedModelCall,
                     RecordedToolCall, ResponseRow, ResponseSummary, Status, StoredEvent, WebhookBacklog,
                     WebhookDelivery, WebhookOutcome, WebhookRecorded)

T = TypeVar("T")


@dataclass(frozen=True)
class Finish:
    """The final write of one response: its last events, status and output."""

    response_id: str
    attempt_number: int
    status: Status
    output: list[dict[str, Any]]
    error: dict[str, Any] | None
    trace_id: str | None
    events: Sequence[tuple[int, str, str]]  # unflushed (sequence_number, type, data), the terminal one last
    custom_outputs: dict[str, Any] | None = None
    # False: the owning attempt's own final write. True: a cancel or time-out decided
    # outside the owner, which wakes every listener and tells the owner to stop.
    external: bool = False


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class WebhookFanout:
    """The webhook deliveries the ending statement queues: for each background response that
    ends with a listed event type, one per receiver URL; ``queued`` is called once some are
    committed (to wake this worker's deliveries). The default queues none."""

    urls: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    queued: Callable[[], None] = _nothing


class ConversationGone(Exception):
    """The conversation was deleted before the new turn was stored."""


class ApprovalRefused(Exception):
    """An answer to an approval request was refused (nothing was stored); ``why`` says why."""

    def __init__(self, request_id: str, why: str, expired: bool = False):
        super().__init__(f"{request_id}: {why}")
        self.request_id = request_id
        self.why = why
        self.expired = expired


class Store:
    """With a ``deadline`` (the store of the routes and tails, whose clients wait), every call
    answers within it or raises :class:`DatabaseUnreachable`; without one (the worker's, whose
    writes retry on their own terms), calls wait as long as the pool and the statement time-out let
    them. Every call made under a deadline is a read or an idempotent write, so retrying it is
    harmless."""

    def __init__(self, db: Database, deadline: Deadline | None = None, webhooks: WebhookFanout = WebhookFanout()):
        self.db = db
        self.q = db.queries
        self.deadline = deadline
        self.webhooks = webhooks

    async def bounded(self, call: Callable[[], Awaitable[T]], *, retry: bool = True,
                      extra_seconds: float = 0.0) -> T:
        """``await call()`` under this store's deadline, if it has one."""
        if self.deadline is None:
            return await call()
        return await self.deadline(call, retry=retry, extra_seconds=extra_seconds)

    async def _one(self, query, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        async def one() -> dict[str, Any] | None:
            async with self.db.pool.connection() as conn:
                return await (await conn.execute(query, params)).fetchone()

        return await self.bounded(one)

    async def _all(self, query, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async def rows() -> list[dict[str, Any]]:
            async with self.db.pool.connection() as conn:
                return await (await conn.execute(query, params)).fetchall()

        return await self.bounded(rows)

    async def _run(self, query, params: dict[str, Any] | None = None) -> None:
        async def run() -> None:
            async with self.db.pool.connection() as conn:
                await conn.execute(query, params)

        await self.bounded(run)

    async def ping(self) -> None:
        await self._one(self.q.ping)

    async def insert_response(
        self,
        *,
        response_id: str,
        owner: str,
        status: Status,
        worker_id: str | None,
        created_at: float,
        request: dict[str, Any],
        request_headers: dict[str, str],
        model: str,
        created_event: str,
        background: bool = True,
        conversation_id: str | None = None,
        history_end: int | None = None,
        conn=None,
        idempotency_key: str | None = None,
    ) -> None:
        params = {
                "response_id": response_id,
                "owner": owner,
                "status": status.value,
                "attempt_number": 1 if status is Status.IN_PROGRESS else 0,
                "worker_id": worker_id,
                "created_at": created_at,
                "request": Jsonb(request),
                "request_headers": Jsonb(request_headers),
                "model": model,
                "created_event": created_event,
                "background": background,
                "control_channel": self.q.control_channel,
                "conversation_id": conversation_id,
                "history_end": history_end,
                "idempotency_key": idempotency_key,
            }
        if conn is None:
            await self._one(self.q.insert_response, params)
        else:
            await conn.execute(self.q.insert_response, params)

    async def insert_turn(
        self,
        *,
        conversation_id: str,
        decide: Callable[[list[tuple[str, Status]]], Status],
        created_event: Callable[[Status], str],
        answers: Sequence[ApprovalAnswer] = (),
        asked_by: str | None = None,
        **response: Any,
    ) -> tuple[Status, int | None]:
        """Store a new turn of a conversation, one new turn of it at a time (the conversation row
        is locked). ``decide(unfinished)`` is given the conversation's unfinished turns
        ``(response_id, status)`` and answers the new turn's status (or raises to store nothing).
        ``answers`` answer requests of the response ``asked_by`` (one refused raises
        :class:`ApprovalRefused` and stores nothing); the requests the conversation still waits on
        are declined. Returns that status and, if it starts now, how many conversation items its
        handler sees."""
        async with self.db.pool.connection() as conn, conn.transaction():
            conversation = await (await conn.execute(
                self.q.lock_conversation, {"conversation_id": conversation_id})).fetchone()
            if conversation is None:
                raise ConversationGone(conversation_id)
            # A new statement: it sees every turn committed before the lock was granted.
            unfinished = await (await conn.execute(
                self.q.unfinished_turns, {"conversation_id": conversation_id})).fetchall()
            status = decide([(r["response_id"], Status(r["status"])) for r in unfinished])
            for answer in answers:
                await self._answer_approval(conn, answer, asked_by, response["owner"], response["response_id"])
            await conn.execute(self.q.decline_pending_approvals, {
                "conversation_id": conversation_id, "asked_by": asked_by, "answered_by": response["response_id"]})
            history_end = conversation["item_count"] if status is Status.IN_PROGRESS else None
            if status is Status.QUEUED:
                response = {**response, "worker_id": None}  # whichever worker claims it
            await self.insert_response(**response, status=status, created_event=created_event(status),
                                       conversation_id=conversation_id, history_end=history_end, conn=conn)
        return status, history_end

    async def _answer_approval(self, conn, answer: ApprovalAnswer, asked_by: str | None, owner: str,
                               answered_by: str) -> None:
        params = {"request_id": answer.request_id, "owner": owner}
        answered = await (await conn.execute(self.q.answer_approval, {
            **params, "approve": answer.approve, "reason": answer.reason, "asked_by": asked_by,
            "answered_by": answered_by})).fetchone()
        if answered is not None:
            return
        found = await (await conn.execute(self.q.approval_of, params)).fetchone()
        if found is None:
            raise ApprovalRefused(answer.request_id, "no such approval request")
        if found["response_id"] != asked_by:
            raise ApprovalRefused(answer.request_id, f"it was asked by response {found['response_id']}, not by "
                                  "the previous_response_id")
        if found["status"] != "pending":
            raise ApprovalRefused(answer.request_id, f"it was already answered ({found['status']})")
        raise ApprovalRefused(answer.request_id, "it expired before it was answered", expired=True)

    async def claim_queued(self, worker_id: str) -> ResponseRow | None:
        record = await self._one(self.q.claim_queued, {"worker_id": worker_id})
        return ResponseRow.from_record(record) if record else None

    async def claim_stale(
        self, worker_id: str, *, stale_seconds: float, timeout_seconds: float, limit: int,
        own_running: Sequence[str] = (), dead_owners: bool = False,
    ) -> list[ResponseRow]:
        """Runs whose heartbeat is stale; with ``dead_owners``, also those whose owner's liveness lock is free."""
        records = await self._all(
            self.q.claim_stale,
            {
                "worker_id": worker_id,
                "dead_owners": dead_owners,
                "own_running": list(own_running),
                "stale_seconds": float(stale_seconds),
                "timeout_seconds": float(timeout_seconds),
                "limit": limit,
            },
        )
        rows = [ResponseRow.from_record(r) for r in records]
        if rows:
            # The claim's own snapshot predates a batch the old owner may have
            # committed just before the claim locked the row; read it afresh.
            lasts = await self._all(self.q.last_sequences, {"response_ids": [row.response_id for row in rows]})
            last = {r["response_id"]: r["last_sequence"] for r in lasts}
            rows = [replace(row, last_sequence=last[row.response_id]) for row in rows]
        return rows

    async def renew_leases(self, leases: Sequence[tuple[str, int]]) -> set[str]:
        """Heartbeat: renew ``(response_id, attempt_number)`` leases; returns the ids still ours."""
        return await self._touch_leases(leases, release=False)

    async def release_leases(self, leases: Sequence[tuple[str, int]]) -> None:
        """Clean shutdown: make our leases stale at once, so another worker resumes them now."""
        await self._touch_leases(leases, release=True)

    async def _touch_leases(self, leases: Sequence[tuple[str, int]], *, release: bool) -> set[str]:
        records = await self._all(
            self.q.touch_leases,
            {"response_ids": [rid for rid, _ in leases], "attempt_numbers": [a for _, a in leases],
             "release": release},
        )
        return {r["response_id"] for r in records}

    async def append_events(
        self, batches: Sequence[tuple[str, int, Sequence[tuple[int, str, str]]]]
    ) -> set[tuple[str, int]]:
        """Store attempts' ``(response_id, attempt_number, rows)`` batches in one statement;
        returns the ``(response_id, attempt_number)`` that still owned their response (the
        others stored nothing). Re-sending a stored batch is harmless (same sequence numbers)."""
        rows = [row for _, _, batch in batches for row in batch]
        records = await self._all(
            self.q.append_events,
            {
                "response_ids": [rid for rid, _, batch in batches for _ in batch],
                "attempt_numbers": [attempt for _, attempt, batch in batches for _ in batch],
                **_event_columns(rows),
                "events_channel": self.q.events_channel,
            },
        )
        return {(r["response_id"], r["attempt_number"]) for r in records}

    async def finish_responses(self, finishes: Sequence[Finish], conn=None) -> set[tuple[str, int]]:
        """End responses in one statement (see :class:`Finish`), queueing their webhook events;
        returns the ``(response_id, attempt_number)`` that ended (the others wrote nothing).
        On ``conn`` (inside the caller's transaction) the caller wakes the webhooks once committed."""
        params = {
            "response_ids": [f.response_id for f in finishes],
            "attempt_numbers": [f.attempt_number for f in finishes],
            "statuses": [f.status.value for f in finishes],
            "outputs": [Jsonb(f.output) for f in finishes],
            "errors": [_jsonb_or_none(f.error) for f in finishes],
            "trace_ids": [f.trace_id for f in finishes],
            "custom_outputs": [_jsonb_or_none(f.custom_outputs) for f in finishes],
            "externals": [f.external for f in finishes],
            "event_response_ids": [f.response_id for f in finishes for _ in f.events],
            **_event_columns([row for f in finishes for row in f.events]),
            "events_channel": self.q.events_channel,
            "control_channel": self.q.control_channel,
            "webhook_urls": list(self.webhooks.urls),
            "webhook_events": list(self.webhooks.event_types),
        }
        if conn is not None:
            records = await (await conn.execute(self.q.finish_responses, params)).fetchall()
        else:
            records = await self._all(self.q.finish_responses, params)
            if any(r["webhooks"] for r in records):
                self.webhooks.queued()
        return {(r["response_id"], r["attempt_number"]) for r in records}

    async def finalize(
        self,
        response_id: str,
        *,
        status: Status,
        terminal_event: Callable[[ResponseRow], str],
        error: dict[str, Any] | None = None,
        owner: str | None = None,
    ) -> ResponseRow | None:
        """End a queued or running response from outside its owner (cancel, time-out), storing
        ``terminal_event(final_row)`` as its last event.

        Locks the row, so the owner's next write waits and then finds it lost
        the response. Returns the row as it ends up (unchanged if it was
        already finished), or None if there is no such response for ``owner``
        (None means any owner).
        """
        return await self.bounded(lambda: self._finalize(response_id, status, terminal_event, error, owner))

    async def _finalize(self, response_id: str, status: Status, terminal_event: Callable[[ResponseRow], str],
                        error: dict[str, Any] | None, owner: str | None) -> ResponseRow | None:
        async with self.db.pool.connection() as conn:
            async with conn.transaction():
                final, ended = await self._finalize_in(conn, response_id, status, terminal_event, error, owner)
        if ended and self.webhooks.urls:
            self.webhooks.queued()  # committed now, so the deliveries see its event
        return final

    async def _finalize_in(self, conn, response_id: str, status: Status,
                           terminal_event: Callable[[ResponseRow], str], error: dict[str, Any] | None,
                           owner: str | None) -> tuple[ResponseRow | None, bool]:
        """:meth:`finalize` inside its transaction; also says whether this call ended the response."""
        record = await (await conn.execute(self.q.lock_response, {"response_id": response_id})).fetchone()
        if record is None or (owner is not None and record["owner"] != owner):
            return None, False
        row = ResponseRow.from_record(record)
        if row.status.is_terminal:
            return row, False
        # The lock waited for the owner's in-flight batch, which the locking
        # statement's snapshot does not show: count the events in a new one.
        last = await (await conn.execute(self.q.last_sequences, {"response_ids": [response_id]})).fetchone()
        row = replace(row, last_sequence=last["last_sequence"])
        items = await conn.execute(
            self.q.attempt_output_items,
            {"response_id": response_id, "attempt_number": row.attempt_number},
        )
        output = _output_items(await items.fetchall())
        sequence_number = row.last_sequence + 1
        final = replace(row, status=status, output=output, error=error, last_sequence=sequence_number)
        data = terminal_event(final)
        finish = Finish(response_id=response_id, attempt_number=row.attempt_number, status=status,
                        output=output, error=error, trace_id=None,
                        events=[(sequence_number, status.terminal_event_type, data)], external=True)
        await self.finish_responses([finish], conn)
        return final, True

    async def get_response(self, response_id: str, owner: str) -> ResponseRow | None:
        record = await self._one(self.q.get_response, {"response_id": response_id, "owner": owner})
        return ResponseRow.from_record(record) if record else None

    async def get_response_status(self, response_id: str, owner: str) -> ResponseRow | None:
        """As :meth:`get_response`, but ``request`` holds only the request's ``metadata``."""
        record = await self._one(self.q.get_response_status, {"response_id": response_id, "owner": owner})
        return ResponseRow.from_record(record) if record else None

    async def get_response_by_idempotency_key(self, owner: str, idempotency_key: str) -> ResponseRow | None:
        record = await self._one(self.q.get_response_by_idempotency_key,
                                 {"owner": owner, "idempotency_key": idempotency_key})
        return ResponseRow.from_record(record) if record else None

    async def attempt_output_items(self, response_id: str, attempt_number: int) -> list[dict[str, Any]]:
        records = await self._all(
            self.q.attempt_output_items, {"response_id": response_id, "attempt_number": attempt_number}
        )
        return _output_items(records)

    async def prior_events(self, response_id: str, attempt_number: int) -> list[str]:
        """Events of every attempt before ``attempt_number``, as stored JSON."""
        records = await self._all(
            self.q.prior_events, {"response_id": response_id, "attempt_number": attempt_number}
        )
        return [r["data"] for r in records]

    async def events_after(self, response_id: str, after: int, limit: int = 1000) -> list[StoredEvent]:
        records = await self._all(
            self.q.events_after, {"response_id": response_id, "after": after, "limit": limit}
        )
        return [StoredEvent(r["sequence_number"], r["type"], r["data"]) for r in records]

    async def watch_response(self, response_id: str, seconds: float) -> None:
        """Ask the writers of an unfinished response to NOTIFY for ``seconds`` (a tail elsewhere waits)."""
        await self._run(self.q.watch_response, {"response_id": response_id, "seconds": float(seconds)})

    async def delete_response(self, response_id: str, owner: str) -> bool:
        return bool(await self._all(self.q.delete_response, {"response_id": response_id, "owner": owner}))

    async def timed_out_runs(self, timeout_seconds: float) -> list[str]:
        records = await self._all(self.q.timed_out_runs, {"timeout_seconds": float(timeout_seconds)})
        return [r["response_id"] for r in records]

    # ----- conversations -------------------------------------------------------

    async def create_conversation(self, conversation_id: str, owner: str, *, items: list[dict[str, Any]] = (),
                                  metadata: dict[str, str] | None = None,
                                  session_key: str | None = None) -> ConversationRow | None:
        """A new conversation; None if ``session_key`` already has one for ``owner``."""
        record = await self._one(self.q.create_conversation, {
            "conversation_id": conversation_id, "owner": owner, "session_key": session_key,
            "metadata": Jsonb(metadata or {}), "items": Jsonb(list(items))})
        return ConversationRow.from_record(record) if record else None

    async def branch_conversation(self, conversation_id: str, owner: str, *, source_id: str,
                                  item_count: int) -> ConversationRow:
        record = await self._one(self.q.branch_conversation, {
            "conversation_id": conversation_id, "owner": owner, "source_id": source_id, "item_count": item_count})
        return ConversationRow.from_record(record)

    async def get_conversation(self, conversation_id: str, owner: str) -> ConversationRow | None:
        record = await self._one(self.q.get_conversation, {"conversation_id": conversation_id, "owner": owner})
        return ConversationRow.from_record(record) if record else None

    async def session_conversation(self, owner: str, session_key: str) -> ConversationRow | None:
        record = await self._one(self.q.session_conversation, {"owner": owner, "session_key": session_key})
        return ConversationRow.from_record(record) if record else None

    async def update_conversation_metadata(self, conversation_id: str, owner: str,
                                           metadata: dict[str, str]) -> ConversationRow | None:
        record = await self._one(self.q.update_conversation_metadata,
                                 {"conversation_id": conversation_id, "owner": owner, "metadata": Jsonb(metadata)})
        return ConversationRow.from_record(record) if record else None

    async def delete_conversation(self, conversation_id: str, owner: str) -> bool:
        return bool(await self._all(self.q.delete_conversation, {"conversation_id": conversation_id, "owner": owner}))

    async def unfinished_turns(self, conversation_id: str) -> list[tuple[str, Status]]:
        records = await self._all(self.q.unfinished_turns, {"conversation_id": conversation_id})
        return [(r["response_id"], Status(r["status"])) for r in records]

    async def response_items_end(self, conversation_id: str, response_id: str) -> int:
        record = await self._one(self.q.response_items_end,
                                 {"conversation_id": conversation_id, "response_id": response_id})
        return record["item_end"]

    async def conversation_history(self, conversation_id: str, start: int, end: int) -> list[dict[str, Any]]:
        """Items ``start`` to ``end - 1`` of a conversation, in order."""
        records = await self._all(self.q.conversation_history,
                                  {"conversation_id": conversation_id, "start": start, "end": end})
        return [r["item"] for r in records]

    async def conversation_items(self, conversation_id: str, *, limit: int, descending: bool,
                                 after: int | None) -> list[tuple[int, dict[str, Any]]]:
        """A page of items as ``(position, item)``, after the position ``after`` in that order."""
        if descending:
            records = await self._all(self.q.conversation_items_desc, {
                "conversation_id": conversation_id, "limit": limit, "before": 2**31 - 1 if after is None else after})
        else:
            records = await self._all(self.q.conversation_items_asc, {
                "conversation_id": conversation_id, "limit": limit, "after": -1 if after is None else after})
        return [(r["position"], r["item"]) for r in records]

    async def conversation_item_position(self, conversation_id: str, item_id: str) -> int | None:
        record = await self._one(self.q.conversation_item_position,
                                 {"conversation_id": conversation_id, "item_id": item_id})
        return record["position"] if record else None

    async def delete_expired_conversations(self, retention_seconds: float) -> None:
        await self._run(self.q.delete_expired_conversations, {"retention_seconds": float(retention_seconds)})

    async def delete_expired(self, retention_seconds: float) -> None:
        await self._run(self.q.delete_expired, {"retention_seconds": float(retention_seconds)})


    async def list_responses(
        self, owner: str, *, limit: int, after: str | None = None, status: Status | None = None,
        waiting: bool = False,
    ) -> list[ResponseSummary]:
        """``owner``'s responses newest first, those after the response ``after`` (none if it is unknown);
        with ``waiting``, only those with a request waiting for an approval."""
        records = await self._all(
            self.q.list_responses,
            {"owner": owner, "limit": limit, "after": after, "status": status.value if status else None,
             "waiting": waiting},
        )
        return [ResponseSummary.from_record(r) for r in records]

    async def record_tool_call(self, response_id: str, call: RecordedToolCall) -> None:
        """Store one finished tool call (a repeat of its key keeps the first record)."""
        await self._run(self.q.record_tool_call, {
            "response_id": response_id, "call_key": call.key, "attempt_number": call.attempt_number,
            "name": call.name, "arguments": Jsonb(call.arguments), "output": Jsonb(call.output),
            "call_id": call.call_id,
        })

    async def recorded_tool_calls(self, response_id: str) -> list[RecordedToolCall]:
        records = await self._all(self.q.recorded_tool_calls, {"response_id": response_id})
        return [RecordedToolCall.from_record(r) for r in records]

    # ----- long-term memory (memory/) -------------------------------------------

    async def enable_memory_embeddings(self) -> None:
        """Create pgvector (if missing) and the embeddings table; raises where the extension is not
        available. Serialised with the migrations, so workers starting together do not race."""
        async def enable() -> None:
            async with self.db.pool.connection() as conn, conn.transaction():
                await conn.execute(self.q.lock_migrations, {"schema": self.q.schema})
                await conn.execute(self.q.enable_memory_embeddings)

        await self.bounded(enable)

    async def insert_memory(self, *, memory_id: str, owner: str, text: str, response_id: str | None,
                            save_key: str | None, max_count: int) -> tuple[MemoryRow, bool] | None:
        """Save a memory unless ``owner`` has ``max_count`` already (then None). Returns the row and
        whether it is new: a ``save_key`` saved before returns that memory, not a second one."""
        async def insert() -> tuple[MemoryRow, bool] | None:
            async with self.db.pool.connection() as conn, conn.transaction():
                # One save per owner at a time: the count the insert sees is the count it adds to.
                await conn.execute(self.q.lock_memory_owner, {"schema": self.q.schema, "owner": owner})
                record = await (await conn.execute(self.q.insert_memory, {
                    "memory_id": memory_id, "owner": owner, "text": text, "response_id": response_id,
                    "save_key": save_key, "max_count": max_count})).fetchone()
            return (MemoryRow.from_record(record), record["created"]) if record else None

        # Not retried: a save without a key may have landed.
        return await self.bounded(insert, retry=False)

    async def get_memory(self, memory_id: str, owner: str) -> MemoryRow | None:
        record = await self._one(self.q.get_memory, {"memory_id": memory_id, "owner": owner})
        return MemoryRow.from_record(record) if record else None

    async def list_memories(self, owner: str, *, limit: int, after: str | None = None) -> list[MemoryRow]:
        """``owner``'s memories newest first, those after the memory ``after`` (none if it is unknown)."""
        records = await self._all(self.q.list_memories, {"owner": owner, "limit": limit, "after": after})
        return [MemoryRow.from_record(r) for r in records]

    async def search_memories_text(self, owner: str, query: str, *, limit: int) -> list[MemoryRow]:
        """Full-text search; ``query`` in websearch syntax (words joined with "or" match any)."""
        records = await self._all(self.q.search_memories_text, {"owner": owner, "query": query, "limit": limit})
        return [MemoryRow.from_record(r) for r in records]

    async def search_memories_semantic(self, owner: str, *, model: str, embedding: Sequence[float],
                                       limit: int) -> list[MemoryRow]:
        records = await self._all(self.q.search_memories_semantic, {
            "owner": owner, "model": model, "embedding": _vector_text(embedding), "limit": limit})
        return [MemoryRow.from_record(r) for r in records]

    async def memories_without_embedding(self, owner: str, *, model: str, limit: int) -> list[MemoryRow]:
        records = await self._all(self.q.memories_without_embedding, {"owner": owner, "model": model, "limit": limit})
        return [MemoryRow.from_record(r) for r in records]

    async def store_memory_embeddings(self, model: str, embeddings: Sequence[tuple[str, Sequence[float]]]) -> None:
        """Store ``(memory_id, embedding)`` pairs made by ``model`` (idempotent: a repeat replaces)."""
        await self._run(self.q.store_memory_embeddings, {
            "model": model, "memory_ids": [memory_id for memory_id, _ in embeddings],
            "embeddings": [_vector_text(vector) for _, vector in embeddings]})

    async def delete_memory(self, memory_id: str, owner: str) -> bool:
        return bool(await self._all(self.q.delete_memory, {"memory_id": memory_id, "owner": owner}))

    async def delete_memories(self, owner: str) -> int:
        """Forget all of ``owner``'s memories; how many there were."""
        record = await self._one(self.q.delete_memories, {"owner": owner})
        return record["deleted"]

    # ----- the journal of model calls and LangGraph checkpoints (journal/) -----

    async def record_model_call(self, response_id: str, attempt_number: int, position: int, input_digest: str,
                                result: str) -> None:
        """Store one finished model call at ``position`` (a newer attempt's record replaces an older one's)."""
        await self._run(self.q.record_model_call, {
            "response_id": response_id, "attempt_number": attempt_number, "position": position,
            "input_digest": input_digest, "result": result,
        })

    async def recorded_model_calls(self, response_id: str) -> list[RecordedModelCall]:
        records = await self._all(self.q.recorded_model_calls, {"response_id": response_id})
        return [RecordedModelCall.from_record(r) for r in records]

    async def delete_ended_checkpoints(self) -> None:
        """Delete the LangGraph checkpoints of threads whose response ended or is gone (if the
        checkpointer's tables exist: a server that never ran the LangGraph variant has none)."""
        present = await self._one(self.q.checkpoint_tables, {"schema": self.q.schema})
        if present and present["present"]:
            await self._run(self.q.delete_ended_checkpoints)

    async def set_up_once(self, name: str, setup: Callable[[], Awaitable[None]]) -> None:
        """Run ``setup`` once per process and database, one worker at a time (an advisory lock held
        on a connection of its own while ``setup`` uses others)."""
        if name in self.db.set_up:
            return
        params = {"name": name, "schema": self.q.schema}
        async with self.db.pool.connection() as conn:
            await conn.execute(self.q.lock_setup, params)
            try:
                await setup()
            finally:
                await conn.execute(self.q.unlock_setup, params)
        self.db.set_up.add(name)

    # ----- approvals (journal/approvals.py) --------------------------------------

    async def ask_approval(self, response_id: str, request_id: str, *, name: str, arguments: str,
                           server_label: str, call_id: str, state: str, thread_id: str | None,
                           timeout_seconds: float) -> None:
        """Record a request waiting for approval (asking again for ``request_id`` keeps the first)."""
        await self._run(self.q.ask_approval, {
            "response_id": response_id, "request_id": request_id, "name": name, "arguments": arguments,
            "server_label": server_label, "call_id": call_id, "state": state, "thread_id": thread_id,
            "timeout_seconds": float(timeout_seconds)})

    async def answered_approvals(self, response_id: str) -> list[AnsweredApproval]:
        records = await self._all(self.q.answered_approvals, {"response_id": response_id})
        return [AnsweredApproval.from_record(r) for r in records]

    async def response_approvals(self, response_id: str) -> list[dict[str, Any]]:
        """``{request_id, status, expires_at, answered_by}`` of each request the response asked."""
        return await self._all(self.q.response_approvals, {"response_id": response_id})

    # ----- liveness (liveness.py) ---------------------------------------------

    async def register_worker(self, worker_id: str, key: int) -> None:
        await self._run(self.q.register_worker, {"worker_id": worker_id, "key": key})

    async def unregister_worker(self, worker_id: str) -> None:
        await self._run(self.q.unregister_worker, {"worker_id": worker_id})

    async def forget_dead_workers(self) -> None:
        await self._run(self.q.forget_dead_workers)

    async def liveness_lock_holders(self, key: int) -> list[tuple[int, int]]:
        """(holder backend, this connection's backend) for each session holding ``key``."""
        return [(r["holder"], r["me"]) for r in await self._all(self.q.liveness_lock_holder, {"key": key})]

    # ----- webhooks (webhooks/deliveries.py) -------------------------------------

    async def claim_webhook_deliveries(self, limits: dict[str, int], lease_seconds: float) -> list[WebhookDelivery]:
        """Due deliveries, at most ``limits[url]`` per receiver URL, each leased for ``lease_seconds``."""
        records = await self._all(self.q.claim_webhook_deliveries, {
            "urls": list(limits), "limits": list(limits.values()), "lease_seconds": float(lease_seconds)})
        return [WebhookDelivery(**r) for r in records]

    async def record_webhook_outcomes(self, outcomes: Sequence[WebhookOutcome],
                                      horizon_seconds: float) -> list[WebhookRecorded]:
        """Record what sends came to (one statement); a delivery still failing once its retry
        would fall past ``horizon_seconds`` after its event is failed for good. Returns the rows changed."""
        records = await self._all(self.q.record_webhook_outcomes, {
            "delivery_ids": [o.delivery_id for o in outcomes], "attempts": [o.attempts for o in outcomes],
            "delivered": [o.delivered for o in outcomes], "retry_after": [float(o.retry_after) for o in outcomes],
            "errors": [o.error for o in outcomes], "horizon_seconds": float(horizon_seconds)})
        return [WebhookRecorded.from_record(r) for r in records]

    async def stop_webhook_url(self, url: str, error: str) -> int:
        """A receiver answered 410: no more deliveries to ``url``; returns how many pending ones were dropped."""
        return (await self._one(self.q.stop_webhook_url, {"url": url, "error": error}))["dropped"]

    async def resume_webhook_urls(self, urls: Sequence[str]) -> list[str]:
        """Deliver to ``urls`` again if a 410 had stopped them; returns those it had."""
        return [r["url"] for r in await self._all(self.q.resume_webhook_urls, {"urls": list(urls)})]

    async def webhook_backlog(self, urls: Sequence[str]) -> WebhookBacklog:
        return WebhookBacklog(**await self._one(self.q.webhook_backlog, {"urls": list(urls)}))

    async def delete_expired_webhook_deliveries(self, retention_seconds: float, horizon_seconds: float) -> None:
        await self._run(self.q.delete_expired_webhook_deliveries,
                        {"retention_seconds": float(retention_seconds), "horizon_seconds": float(horizon_seconds)})


def _output_items(records) -> list[dict[str, Any]]:
    """Output items of an attempt's ``output_item.done`` events; the ones it closed for an
    earlier attempt (status incomplete, see stream_grammar.seam_after) are not its output."""
    items = [json.loads(r["data"])["item"] for r in records]
    return [item for item in items if item.get("status") != "incomplete"]


def _event_columns(rows: Sequence[tuple[int, str, str]]) -> dict[str, list]:
    """``(sequence_number, type, data)`` rows as the three arrays the INSERTs unnest."""
    return {
        "sequence_numbers": [seq for seq, _, _ in rows],
        "types": [typ for _, typ, _ in rows],
        "datas": [data for _, _, data in rows],
    }


def _vector_text(vector: Sequence[float]) -> str:
    """A vector as pgvector's text form, ``[1.0,2.5,...]``."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def _jsonb_or_none(value: Any) -> Jsonb | None:
    return Jsonb(value) if value is not None else None
