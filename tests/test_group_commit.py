"""Worker-wide group commit against the real embedded PostgreSQL: batches of
different attempts share a statement, each keeps its own lease check, and a
batch the database refuses fails alone."""

from __future__ import annotations

import asyncio
import json

import psycopg

from agent_server.long_running.events.group_commit import GroupCommit
from agent_server.long_running.storage.models import Status
from agent_server.long_running.storage.store import Finish, Store
from tests.support import insert_response, open_database


class _CountingStore(Store):
    """The real store; counts the statements the group commit sends."""

    def __init__(self, db):
        super().__init__(db)
        self.statements: list[int] = []  # batches (or finishes) per statement, in order

    async def append_events(self, batches):
        self.statements.append(len(batches))
        return await super().append_events(batches)

    async def finish_responses(self, finishes, conn=None):
        self.statements.append(len(finishes))
        return await super().finish_responses(finishes, conn)


def _rid(n: int) -> str:
    return f"resp_{n:032x}"


def _rows(first: int, count: int, text: str = "x") -> list[tuple[int, str, str]]:
    return [(seq, "response.output_text.delta", json.dumps({"delta": text, "sequence_number": seq}))
            for seq in range(first, first + count)]


async def _one_statement_at_a_time(pg_url: str, schema: str, responses: int):
    """A counting store with ``responses`` running responses, and a group commit that
    sends one statement at a time (so what arrives meanwhile is grouped deterministically)."""
    db = await open_database(pg_url, schema)
    store = _CountingStore(db)
    for n in range(responses):
        await insert_response(store, _rid(n), Status.IN_PROGRESS)
    return db, store, GroupCommit(store, max_in_flight=1)


def test_ready_batches_share_one_statement_and_keep_their_own_lease(pg_url, db_schema, sql):
    async def main():
        db, store, commits = await _one_statement_at_a_time(pg_url, db_schema, 5)
        # Response 3 was claimed by another worker (attempt 2): attempt 1 must store nothing.
        sql(f"UPDATE {db_schema}.responses SET attempt_number = 2 WHERE response_id = %s", (_rid(3),))
        # The first batch goes at once, alone; the four that arrive while it is in flight go together.
        results = await asyncio.gather(*(commits.append(_rid(n), 1, _rows(1, 3)) for n in range(5)))
        # Re-sending a committed batch (an answer lost on the way back) stores nothing twice.
        again = await asyncio.gather(*(commits.append(_rid(n), 1, _rows(1, 3)) for n in (0, 1)))
        await db.close()
        return results, again, store

    results, again, store = asyncio.run(main())
    assert results == [True, True, True, False, True]
    assert again == [True, True]
    # 5 batches: one alone, then four in one statement; the two re-sends each alone.
    assert store.statements == [1, 4, 1, 1]
    stored = sql(f"SELECT response_id, array_agg(sequence_number ORDER BY sequence_number) FROM {db_schema}.events "
                 "GROUP BY response_id ORDER BY response_id")
    assert stored == [(_rid(n), [0] if n == 3 else [0, 1, 2, 3]) for n in range(5)]


def test_a_batch_the_database_refuses_fails_alone(pg_url, db_schema, sql):
    async def main():
        db, store, commits = await _one_statement_at_a_time(pg_url, db_schema, 4)
        first = asyncio.ensure_future(commits.append(_rid(0), 1, _rows(1, 1)))
        # Postgres text cannot hold NUL: this batch is refused, and it rides with two good ones.
        bad = [(1, "response.output_text.delta", "nul \x00 inside")]
        rest = await asyncio.gather(commits.append(_rid(1), 1, _rows(1, 2)), commits.append(_rid(2), 1, bad),
                                    commits.append(_rid(3), 1, _rows(1, 2)), return_exceptions=True)
        await first
        await db.close()
        return rest, store

    rest, store = asyncio.run(main())
    assert rest[0] is True and rest[2] is True
    assert isinstance(rest[1], psycopg.Error), rest[1]
    assert store.statements == [1, 3, 1, 1, 1]  # the three tried together once, then one by one
    counts = dict(sql(f"SELECT response_id, count(*) FROM {db_schema}.events GROUP BY response_id"))
    assert counts == {_rid(0): 2, _rid(1): 3, _rid(2): 1, _rid(3): 3}


def test_many_slow_streams_share_statements(pg_url, db_schema, sql):
    """200 attempts appending 5 batches each, concurrently: every event stored, in
    order, in far fewer statements than batches."""
    async def main():
        db = await open_database(pg_url, db_schema)
        store = _CountingStore(db)
        for n in range(200):
            await insert_response(store, _rid(n), Status.IN_PROGRESS)
        commits = GroupCommit(store)

        async def stream(n: int):
            for i in range(5):
                assert await commits.append(_rid(n), 1, _rows(1 + i, 1))

        await asyncio.gather(*(stream(n) for n in range(200)))
        await db.close()
        return store

    store = asyncio.run(main())
    assert len(store.statements) < 1000 / 5, store.statements
    stored = sql(f"SELECT count(*), count(DISTINCT response_id) FROM {db_schema}.events WHERE sequence_number > 0")
    assert stored == [(1000, 200)]


def test_a_grouped_statement_notifies_only_the_watched_responses(pg_url, db_schema):
    async def main():
        db = await open_database(pg_url, db_schema)
        store = Store(db)
        for n in range(3):
            await insert_response(store, _rid(n), Status.IN_PROGRESS)
        await store.watch_response(_rid(1), 60)
        owned = await store.append_events([(_rid(n), 1, _rows(1, 4)) for n in range(3)])
        await db.close()
        return owned

    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute(f'LISTEN "{db_schema}_events"')
        owned = asyncio.run(main())
        payloads = [n.payload for n in listener.notifies(timeout=0.5)]
    assert owned == {(_rid(0), 1), (_rid(1), 1), (_rid(2), 1)}
    assert payloads == [f"{_rid(1)}:4"]


def test_a_stale_attempt_stores_nothing_even_beside_the_owner_in_one_statement(pg_url, db_schema, sql):
    async def main():
        db, store, commits = await _one_statement_at_a_time(pg_url, db_schema, 2)
        sql(f"UPDATE {db_schema}.responses SET attempt_number = 2 WHERE response_id = %s", (_rid(1),))
        first = asyncio.ensure_future(commits.append(_rid(0), 1, _rows(1, 1)))
        # Attempt 1 (lost its lease) and attempt 2 (the owner) of the same response, grouped.
        stale, owner = await asyncio.gather(commits.append(_rid(1), 1, _rows(1, 2)),
                                            commits.append(_rid(1), 2, _rows(3, 2)))
        await first
        await db.close()
        return stale, owner, store

    stale, owner, store = asyncio.run(main())
    assert (stale, owner, store.statements) == (False, True, [1, 2])
    assert sql(f"SELECT sequence_number, attempt_number FROM {db_schema}.events WHERE response_id = %s "
               "ORDER BY 1", (_rid(1),)) == [(0, 1), (3, 2), (4, 2)]


def _finish(n: int, attempt: int, status: Status = Status.COMPLETED, error=None) -> Finish:
    terminal = (4, status.terminal_event_type, json.dumps({"type": status.terminal_event_type, "sequence_number": 4}))
    return Finish(response_id=_rid(n), attempt_number=attempt, status=status,
                  output=[{"type": "message", "id": f"msg_{n}"}] if status is Status.COMPLETED else [],
                  error=error, trace_id=f"tr-{n}" if n % 2 else None,
                  events=[*_rows(1, 3), terminal])


def test_finishes_ready_together_share_one_statement(pg_url, db_schema, sql):
    async def main():
        db, store, commits = await _one_statement_at_a_time(pg_url, db_schema, 5)
        sql(f"UPDATE {db_schema}.responses SET attempt_number = 2 WHERE response_id = %s", (_rid(3),))
        await store.watch_response(_rid(4), 60)
        failed = _finish(2, 1, Status.FAILED, {"code": "server_error", "message": "boom"})
        results = await asyncio.gather(
            commits.finish(_finish(0, 1)), commits.finish(_finish(1, 1)), commits.finish(failed),
            commits.finish(_finish(3, 1)), commits.finish(_finish(4, 1)))
        await db.close()
        return results, store

    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute(f'LISTEN "{db_schema}_events"')
        results, store = asyncio.run(main())
        payloads = [n.payload for n in listener.notifies(timeout=0.5)]
    assert results == [True, True, True, False, True]
    assert store.statements == [1, 4]  # one alone, then the four that waited
    rows = sql(f"SELECT response_id, status, trace_id, error->>'code', output, heartbeat_at IS NULL "
               f"FROM {db_schema}.responses ORDER BY 1")
    assert rows == [
        (_rid(0), "completed", None, None, [{"type": "message", "id": "msg_0"}], True),
        (_rid(1), "completed", "tr-1", None, [{"type": "message", "id": "msg_1"}], True),
        (_rid(2), "failed", None, "server_error", [], True),
        (_rid(3), "in_progress", None, None, None, False),  # attempt 1 no longer owned it
        (_rid(4), "completed", None, None, [{"type": "message", "id": "msg_4"}], True),
    ]
    counts = dict(sql(f"SELECT response_id, count(*) FROM {db_schema}.events GROUP BY response_id"))
    assert counts == {_rid(0): 5, _rid(1): 5, _rid(2): 5, _rid(3): 1, _rid(4): 5}
    assert payloads == [f"{_rid(4)}:4"]  # only the watched response, with its terminal event


def test_close_stops_what_is_in_flight_and_starts_nothing_new(pg_url, db_schema):
    async def main():
        db, store, commits = await _one_statement_at_a_time(pg_url, db_schema, 3)
        waiting = [asyncio.ensure_future(commits.append(_rid(n), 1, _rows(1, 1))) for n in range(3)]
        await asyncio.sleep(0)  # the first statement has started; two batches wait for it
        await commits.close()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        await db.close()
        return outcomes, store

    outcomes, store = asyncio.run(main())
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
    assert store.statements == [1]
