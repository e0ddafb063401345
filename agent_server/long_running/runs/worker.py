"""This worker's share of the runs: admit, start, heartbeat, stop, take queued
and abandoned work.

One ``Worker`` per process. It holds at most ``max_concurrent_tasks``
attempts; the rest wait in the ``queued`` state for any worker with room.
``attempt_number`` is the lease: every write an attempt makes is conditioned
on it, so a worker that lost a response (cancelled, timed out, or claimed by
another worker after missing heartbeats) finds out at its next write and stops.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..conversations import turns as conversations
from . import recovery
from .attempt import Handler, run_attempt
from ..conversations.turns import HistoryRef
from .leases import LocalAttempts, RunLease, RunningAttempt
from ..events.group_commit import GroupCommit
from ..storage.models import ResponseRow, Status
from ..events.response_object import build_response, created_event
from ..settings import EngineSettings
from ..storage.store import Store
from ..events.tail import EventTail
from .writer import AttemptWriter

logger = logging.getLogger(__name__)


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass
class Worker:
    store: Store
    tail: EventTail
    settings: EngineSettings
    worker_id: str
    handler: Handler
    attempts: LocalAttempts
    _reserved: int = 0
    # Full request headers of responses this worker queued: if it starts them
    # itself, the handler sees them as a standard request would. Never stored.
    _queued_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    _queue_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # Whether queued rows may exist: set by a 'queued' NOTIFY (or a reconnect that may
    # have missed one), cleared by a claim that finds none. A finished run looks for
    # queued work only while it is set, so a worker with an empty queue spends no
    # query per run; the poll every poll_interval_seconds looks regardless.
    _queue_maybe_nonempty: bool = True
    # Claims (stale scan, queue pump) in flight: they hold free slots while their query runs.
    _claiming: int = 0
    _claims_idle: asyncio.Event = field(default_factory=lambda: _set_event())
    _loops: list[asyncio.Task] = field(default_factory=list)
    _last_heartbeat_ok: float = field(default_factory=time.monotonic)
    # Until MLflow's request model (which parses a conversation's history) is imported.
    request_model_loaded: Callable[[], Awaitable[Any]] = lambda: asyncio.sleep(0)
    # Whether a free liveness lock marks a run's owner as dead (liveness.py); else heartbeats only.
    dead_owners_by_lock: Callable[[], bool] = lambda: False
    # The event batches of all attempts in this worker are committed together.
    commits: GroupCommit = field(init=False)
    _retention: recovery.RetentionSweep = field(init=False)

    def __post_init__(self) -> None:
        self.commits = GroupCommit(self.store)
        self._retention = recovery.RetentionSweep(self.store, self.settings.retention_seconds)
        self.histories = conversations.HistoryCache(self.store)

    # ----- lifecycle -------------------------------------------------------

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._queue_loop(), name="queue"),
            asyncio.create_task(self._maintenance_loop(), name="maintenance"),
        ]

    async def close(self) -> None:
        """Stop the loops and our attempts, handing their runs to other workers at once."""
        for loop in self._loops:
            loop.cancel()
        leases = self.attempts.leases()
        for running in self.attempts:
            running.stop_reason = "shutdown"
            running.task.cancel()
        tasks = [r.task for r in self.attempts] + self._loops
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.commits.close()
        if leases:
            try:
                await self.store.release_leases(leases)
                logger.info("Released %d running response(s) for other workers to resume", len(leases))
            except Exception as exc:
                logger.warning("Could not release leases on shutdown (%s); they resume once stale", exc)

    # ----- capacity --------------------------------------------------------

    @property
    def running_count(self) -> int:
        return len(self.attempts)

    def _claim_started(self) -> None:
        self._claiming += 1
        self._claims_idle.clear()

    def _claim_ended(self) -> None:
        self._claiming -= 1
        if self._claiming == 0:
            self._claims_idle.set()

    def free_slots(self) -> int:
        return self.settings.max_concurrent_tasks - len(self.attempts) - self._reserved

    # ----- new responses ---------------------------------------------------

    async def submit(
        self,
        *,
        response_id: str,
        owner: str,
        request: dict[str, Any],
        headers: dict[str, str],
        stored_headers: dict[str, str],
        model: str,
        background: bool = True,
        turn: conversations.Turn | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Store a new response and start it here if there is room (and, for a conversation's
        turn, no earlier turn is unfinished: then it is queued behind it, or refused with
        ``ConversationBusy`` if its strategy is ``reject``).

        Returns the Response object as first stored (``in_progress`` or ``queued``).
        """
        created_at = time.time()
        while self.free_slots() <= 0 and self._claiming:
            # A claim query holds free slots while it runs, and the next may start before
            # this wakes; wait for them rather than queue a response this worker has room for.
            await self._claims_idle.wait()
        start_here = self.free_slots() > 0

        def first_state(status: Status) -> dict[str, Any]:
            return build_response(response_id=response_id, created_at=created_at, status=status, model=model,
                                  output=[], attempt_number=1 if status is Status.IN_PROGRESS else 0,
                                  metadata=request.get("metadata"), background=background,
                                  conversation_id=turn.conversation_id if turn else None)

        def created(status: Status) -> str:
            return created_event(first_state(status))

        row = dict(response_id=response_id, owner=owner, worker_id=self.worker_id if start_here else None,
                   created_at=created_at, request=request, request_headers=stored_headers, model=model,
                   background=background, idempotency_key=idempotency_key)
        history = None
        if start_here:
            self._reserved += 1
        try:
            if turn is None:
                status = Status.IN_PROGRESS if start_here else Status.QUEUED
                await self.store.insert_response(**row, status=status, created_event=created(status))
            else:
                status, history_end = await self.store.insert_turn(
                    conversation_id=turn.conversation_id, decide=functools.partial(turn.status_for, start_here=start_here),
                    created_event=created, answers=turn.answers, asked_by=turn.asked_by, **row)
                if history_end is not None:
                    history = HistoryRef(turn.conversation_id, history_end)
        finally:
            if start_here:
                self._reserved -= 1
        response = first_state(status)
        if status is Status.IN_PROGRESS:
            self._start(
                RunLease.first_attempt(
                    response_id=response_id, request=request, headers=headers, owner=owner, created_at=created_at,
                    task_timeout_seconds=self.settings.task_timeout_seconds, model=model, background=background,
                    next_sequence=1, history=history,
                )
            )
        else:
            self._queued_headers[response_id] = headers
            self._queue_maybe_nonempty = True
        return response

    # ----- running an attempt ----------------------------------------------

    def _start(self, lease: RunLease) -> None:
        task = asyncio.create_task(self._run_attempt(lease), name=f"run-{lease.response_id}-{lease.attempt_number}")
        running = RunningAttempt(lease, task)
        self.attempts.add(running)
        task.add_done_callback(lambda _t: self._attempt_done(running))

    def _attempt_done(self, running: RunningAttempt) -> None:
        self.attempts.remove(running)
        if self._queue_maybe_nonempty:
            # A slot is free: take queued work.
            self._queue_wakeup.set()

    def stop_local(self, response_id: str, reason: str) -> bool:
        """Cancel this worker's attempt on ``response_id``, if it runs here."""
        running = self.attempts.get(response_id)
        if running is None:
            return False
        running.stop_reason = reason
        running.task.cancel()
        return True

    async def _run_attempt(self, lease: RunLease) -> None:
        rid = lease.response_id
        writer = AttemptWriter(
            commits=self.commits,
            lease=lease,
            retry_seconds=self.settings.db_retry_seconds,
            on_committed=self.tail.committed,
            on_stopped=lambda exc: self.stop_local(rid, str(exc)),
            journal_max_bytes=self.settings.journal_max_bytes,
            approval_timeout_seconds=self.settings.approval_timeout_seconds,
        )
        logger.info("Running %s attempt %d on %s", rid, lease.attempt_number, self.worker_id)
        if lease.history is not None:
            try:
                await self.request_model_loaded()
                lease.history_items = await self.histories.items(lease.history)
            except Exception as exc:
                # No final write: the run goes stale and is resumed (here or elsewhere) once readable.
                logger.error("Could not read the conversation of %s (%s); it resumes once stale", rid, exc)
                return
        try:
            await run_attempt(lease, writer, self.handler, self.settings.task_timeout_seconds)
        except asyncio.CancelledError:
            running = self.attempts.get(rid)
            logger.info("Stopped %s attempt %d: %s", rid, lease.attempt_number,
                        running.stop_reason if running else "cancelled")
            raise

    # ----- cancel ------------------------------------------------------------

    def on_control(self, payload: str) -> None:
        """NOTIFY on the control channel: ``queued`` or ``stop:<response_id>``."""
        if payload == "queued":
            self.wake_queue()
        elif payload.startswith("stop:"):
            self.stop_local(payload[5:], "ended by another request (cancel, delete or time-out)")

    def forget_queued(self, response_id: str) -> None:
        self._queued_headers.pop(response_id, None)

    # ----- background loops ------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval_seconds
        while True:
            await asyncio.sleep(interval)
            leases = self.attempts.leases()
            if not leases:
                self._last_heartbeat_ok = time.monotonic()
                continue
            try:
                owned = await self.store.renew_leases(leases)
                self._last_heartbeat_ok = time.monotonic()
            except Exception as exc:
                silent_for = time.monotonic() - self._last_heartbeat_ok
                logger.warning("Heartbeat failed (%s), %.1fs since the last good one", exc, silent_for)
                if silent_for > self.settings.heartbeat_stale_threshold_seconds:
                    # Others may claim our runs by now; two owners must never both run.
                    for rid, _ in leases:
                        self.stop_local(rid, "heartbeats failing for longer than the stale threshold")
                continue
            for rid, attempt in leases:
                if rid not in owned:
                    running = self.attempts.get(rid)
                    if running is not None and running.lease.attempt_number == attempt:
                        self.stop_local(rid, "lease lost (claimed by another worker or ended)")

    def wake_queue(self) -> None:
        self._queue_maybe_nonempty = True
        self._queue_wakeup.set()

    async def _queue_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._queue_wakeup.wait(), self.settings.poll_interval_seconds)
            except TimeoutError:
                pass
            self._queue_wakeup.clear()
            try:
                await self.pump_queue()
            except Exception as exc:
                logger.warning("Taking queued work failed: %s", exc)
                await asyncio.sleep(self.settings.poll_interval_seconds)

    async def pump_queue(self) -> None:
        """Start queued responses while this worker has room."""
        while self.free_slots() > 0:
            # Cleared before the query: a 'queued' NOTIFY during it sets it again.
            self._queue_maybe_nonempty = False
            self._reserved += 1
            self._claim_started()
            try:
                row = await self.store.claim_queued(self.worker_id)
            except BaseException:
                self._queue_maybe_nonempty = True
                raise
            finally:
                self._reserved -= 1
                self._claim_ended()
            if row is None:
                return
            self._queue_maybe_nonempty = True  # there may be more
            headers = self._queued_headers.pop(row.response_id, None) or dict(row.request_headers)
            self._start(recovery.lease_for(row, row.request, headers, None, self.settings.task_timeout_seconds))

    async def _maintenance_loop(self) -> None:
        interval = self.settings.stale_scan_interval_seconds
        while True:
            try:
                await self.claim_stale_runs()
                await recovery.fail_timed_out_runs(self.store, self.settings.task_timeout_seconds)
                await self._retention.maybe_run()
            except Exception as exc:
                logger.warning("Maintenance pass failed: %s", exc)
            # Jitter so workers started together do not scan in lockstep; never
            # longer than the interval, so a dead owner's run resumes at most
            # stale_scan_interval_seconds after it went stale.
            await asyncio.sleep(interval * random.uniform(0.5, 1.0))

    async def claim_stale_runs(self) -> int:
        """Resume runs whose owner stopped heartbeating or died; returns how many."""
        free = self.free_slots()
        if free <= 0:
            return 0
        self._reserved += free
        self._claim_started()
        rows: list[ResponseRow] = []
        try:
            rows = await recovery.claim_stale_runs(self.store, self.worker_id, self.settings, free,
                                                   self.attempts.response_ids(), self.dead_owners_by_lock())
        finally:
            # Keep one slot per claimed run until it has started: building its lease awaits
            # the database, and a submit meanwhile must not take that slot.
            self._reserved -= free - len(rows)
            self._claim_ended()
        for row in rows:
            try:
                self._start(await recovery.resumed_lease(self.store, row, self.settings))
            except Exception as exc:
                logger.error("Could not resume %s (%s); it will be claimed again", row.response_id, exc)
            finally:
                self._reserved -= 1
        return len(rows)
