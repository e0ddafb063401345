"""The worker in-process against the real embedded PostgreSQL: what a worker
queries when runs finish, and that queued work still starts the moment a
slot frees up."""

from __future__ import annotations

import asyncio
import time

from agent_server.long_running.runs.leases import LocalAttempts
from agent_server.long_running.storage.models import Status
from agent_server.long_running.events.tail import EventTail
from agent_server.long_running.runs.worker import Worker
from agent_server.long_running.settings import EngineSettings
from agent_server.long_running.storage.store import Store
from tests.support import open_database

_ITEM = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "done", "annotations": []}]}


class _ClaimCountingStore(Store):
    """The real store; counts the queue claims the worker makes."""

    claims = 0

    async def claim_queued(self, worker_id: str):
        self.claims += 1
        return await super().claim_queued(worker_id)


def _worker(store: Store, settings: EngineSettings, worker_id: str, handler) -> Worker:
    attempts = LocalAttempts()
    return Worker(store=store, tail=EventTail(store, 30.0, attempts.__contains__), settings=settings,
                  worker_id=worker_id, handler=handler, attempts=attempts)


async def _until_status(store: Store, response_id: str, status: Status, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while (row := await store.get_response(response_id, "user:t")) is None or row.status is not status:
        assert time.monotonic() - started < timeout, f"{response_id} is {row and row.status}, not {status}"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def test_finished_runs_query_the_queue_only_when_work_may_be_queued(pg_url, db_schema):
    async def main():
        db = await open_database(pg_url, db_schema)
        store = _ClaimCountingStore(db)
        release = asyncio.Event()

        async def execute(lease, writer):
            if lease.request.get("metadata", {}).get("hold"):
                await release.wait()
            writer.append({"type": "response.output_item.done", "output_index": 0, "item": _ITEM})

        # A 30 s poll: only a finished run can start queued work within this test.
        settings = EngineSettings(db_schema=db_schema, max_concurrent_tasks=1, poll_interval_seconds=30.0)
        runner = _worker(store, settings, "w1", execute)
        runner.start()

        async def submit(n: int, hold: bool = False) -> dict:
            request = {"input": [{"role": "user", "content": str(n)}], "metadata": {"hold": hold}}
            return await runner.submit(response_id=f"resp_{n:032x}", owner="user:t", request=request,
                                       headers={}, stored_headers={}, model="m")

        try:
            # One after another with nothing queued: only the first finished run looks
            # (a new worker cannot know the queue is empty), the other nine do not.
            for n in range(10):
                assert (await submit(n))["status"] == "in_progress"
                await _until_status(store, f"resp_{n:032x}", Status.COMPLETED)
            await asyncio.sleep(0.1)
            claims_while_empty = store.claims

            # The only slot is taken: the next response is queued, and starts as
            # soon as the running one finishes, not at the next poll.
            assert (await submit(100, hold=True))["status"] == "in_progress"
            assert (await submit(101))["status"] == "queued"
            release.set()
            waited = await _until_status(store, f"resp_{101:032x}", Status.COMPLETED)
        finally:
            await runner.close()
            await db.close()
        return claims_while_empty, waited

    claims_while_empty, waited = asyncio.run(main())
    assert claims_while_empty == 1
    assert waited < 5.0


def test_a_clean_shutdown_hands_running_work_to_another_worker_at_once(pg_url, db_schema):
    async def main():
        db = await open_database(pg_url, db_schema)
        store = Store(db)

        async def execute(lease, writer):
            writer.append({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                           "content_index": 0, "delta": "working"})
            await asyncio.sleep(3600)

        settings = EngineSettings(db_schema=db_schema, poll_interval_seconds=30.0, stale_scan_interval_seconds=30.0)
        runner = _worker(store, settings, "a", execute)
        runner.start()
        rids = [f"resp_{n:032x}" for n in range(3)]
        for rid in rids:
            await runner.submit(response_id=rid, owner="user:t", request={"input": []}, headers={},
                                stored_headers={}, model="m")
        await asyncio.sleep(0.3)  # running, first event stored
        await runner.close()
        # Heartbeats were seconds ago at most; only the release makes them claimable now.
        claimed = await store.claim_stale("b", stale_seconds=10, timeout_seconds=3600, limit=10)
        await db.close()
        return rids, claimed

    rids, claimed = asyncio.run(main())
    assert sorted(row.response_id for row in claimed) == rids
    assert {(row.worker_id, row.attempt_number, row.last_sequence) for row in claimed} == {("b", 2, 2)}  # 1 in_progress, 2 the handler's delta
