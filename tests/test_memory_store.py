"""Long-term memory below the HTTP surface, against the real embedded PostgreSQL: limits,
the count under concurrent saves, save keys, owners kept apart, full-text search over a
few hundred memories, and semantic search with pgvector through the real
``databricks-openai`` client against a fake embedding endpoint on 127.0.0.1."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from agent_server.agents.memory_tools import delete_memory, save_memory, search_memories
from agent_server.long_running.memory.access import (
    MemoryGate,
    MemoryUnavailable,
    NoIdentity,
    attempt_memory,
    current_memory,
)
from agent_server.long_running.memory.book import MemoryBook, open_memory_book
from agent_server.long_running.memory.limits import MemoryLimits, MemoryRefused
from agent_server.long_running.memory.search import SearchMode, search_mode
from agent_server.long_running.settings import EngineSettings
from agent_server.long_running.storage.bounded import Deadline
from agent_server.long_running.storage.store import Store
from tests.fake_embeddings import FakeEmbeddingEndpoint
from tests.support import open_database, point_sdk_at

ALICE, BOB = "email:alice@example.com", "email:bob@example.com"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


async def open_book(pg_url: str, schema: str, **settings) -> MemoryBook:
    """A book as the engine opens it: the routes' bounded store, the search mode decided now."""
    db = await open_database(pg_url, schema)
    return await open_memory_book(Store(db, Deadline(10.0)), Store(db), EngineSettings(**settings))


async def close(book: MemoryBook) -> None:
    await book.store.db.close()


def texts(rows) -> list[str]:
    return [row.text for row in rows]


# ----- limits ------------------------------------------------------------------------------------

def test_text_over_the_limits_is_refused_and_nothing_is_stored(pg_url, db_schema, sql):
    async def scenario():
        book = await open_book(pg_url, db_schema, memory_max_chars=20)
        refused = []
        try:
            for text in ["x" * 21, "   ", "", "nul \x00 inside", "half \ud800 surrogate", 42, None]:
                with pytest.raises(MemoryRefused) as caught:
                    await book.save(ALICE, text)
                refused.append(caught.value.code)
            kept = await book.save(ALICE, "  " + "y" * 20 + "\n")  # white space around does not count
        finally:
            await close(book)
        return refused, kept

    refused, kept = run(scenario())
    assert refused == ["memory_too_long"] + ["invalid_memory"] * 6
    assert kept.text == "y" * 20
    assert sql(f"SELECT text FROM {db_schema}.memories") == [("y" * 20,)]


def test_the_count_limit_holds_under_concurrent_saves(pg_url, db_schema, sql):
    async def scenario():
        book = await open_book(pg_url, db_schema, memory_max_per_identity=5)
        try:
            outcomes = await asyncio.gather(*(book.save(ALICE, f"fact {n}") for n in range(12)),
                                            return_exceptions=True)
            bobs = await book.save(BOB, "Bob's own count is his own")
        finally:
            await close(book)
        return outcomes, bobs

    outcomes, bobs = run(scenario())
    saved = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(saved) == 5 and len(refused) == 7
    assert all(isinstance(r, MemoryRefused) and r.code == "memory_limit_reached" for r in refused), refused
    assert "limit of 5 memories" in refused[0].message
    assert sql(f"SELECT owner, count(*) FROM {db_schema}.memories GROUP BY owner ORDER BY owner") == \
        [(ALICE, 5), (BOB, 1)]
    assert bobs.owner == BOB


def test_a_save_key_saves_once(pg_url, db_schema, sql):
    """A tool call that runs again (its run resumed) passes the same key: one memory."""
    async def scenario():
        book = await open_book(pg_url, db_schema)
        try:
            first = await book.save(ALICE, "teal", response_id="resp_" + "a" * 32, save_key="k1")
            again = await book.save(ALICE, "teal, said again", response_id="resp_" + "b" * 32, save_key="k1")
            bobs = await book.save(BOB, "Bob's key space is his own", save_key="k1")
        finally:
            await close(book)
        return first, again, bobs

    first, again, bobs = run(scenario())
    assert again == first and first.response_id == "resp_" + "a" * 32
    assert bobs.memory_id != first.memory_id
    assert sql(f"SELECT count(*) FROM {db_schema}.memories") == [(2,)]


@pytest.mark.parametrize("bad", [{"memory_max_chars": 0}, {"memory_max_per_identity": True},
                                 {"memory_max_chars": 2.5}, {"memory_embedding_endpoint": "  "}])
def test_memory_settings_are_checked_when_the_server_is_built(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        EngineSettings(**bad)


# ----- owners apart, hostile input -----------------------------------------------------------------

def test_owners_never_reach_each_others_memories_and_sql_in_text_is_only_text(pg_url, db_schema, sql):
    async def scenario():
        book = await open_book(pg_url, db_schema)
        try:
            hostile = f"x'); DELETE FROM {db_schema}.memories; DROP TABLE {db_schema}.memories; --"
            alices = await book.save(ALICE, "my favourite colour is teal")
            sneaky = await book.save(BOB, hostile)
            seen = {
                "bob_search": texts(await book.search(BOB, "favourite colour teal")),
                "bob_lists": texts(await book.page(BOB, limit=10, after=None)),
                "bob_after_alices": await book.page(BOB, limit=10, after=alices.memory_id),
                "bob_gets": await book.get(BOB, alices.memory_id),
                "bob_deletes": await book.delete(BOB, alices.memory_id),
                "bob_deletes_all": await book.delete_all(BOB),
                "sql_search": texts(await book.search(ALICE, "'; DELETE FROM memories; --")),
                "odd_ids": [await book.delete(ALICE, odd) for odd in
                            ("' OR 1=1 --", "mem_\x00", alices.memory_id.upper(), "")],
                "alice_search": texts(await book.search(ALICE, "What is my favourite colour?")),
            }
        finally:
            await close(book)
        return alices, sneaky, hostile, seen

    alices, sneaky, hostile, seen = run(scenario())
    assert sneaky.text == hostile  # stored as text, run as nothing
    assert seen["bob_search"] == [] and seen["bob_lists"] == [hostile]
    assert seen["bob_after_alices"] == [] and seen["bob_gets"] is None
    assert seen["bob_deletes"] is False and seen["bob_deletes_all"] == 1  # his own one
    assert seen["sql_search"] == [] and seen["odd_ids"] == [False, False, False, False]
    assert seen["alice_search"] == ["my favourite colour is teal"]
    assert sql(f"SELECT memory_id, owner FROM {db_schema}.memories") == [(alices.memory_id, ALICE)]


def test_the_gate_gives_no_memory_to_the_anonymous_caller_when_deployed(pg_url, db_schema):
    async def scenario():
        book = await open_book(pg_url, db_schema)
        try:
            deployed = MemoryGate(lambda: book, anonymous_allowed=False)
            local = MemoryGate(lambda: book, anonymous_allowed=True)
            with pytest.raises(NoIdentity):
                deployed.for_owner("")
            reason = deployed.for_attempt("", "resp_" + "c" * 32)
            with attempt_memory(reason):
                refused = await save_memory("my favourite colour is teal")
                searched = await search_memories("colour")
            with attempt_memory(local.for_attempt("", "resp_" + "d" * 32)):
                saved = await save_memory("the developer's own memory")
                found = await search_memories("developer")
                [own] = await current_memory().page(limit=10, after=None)
                gone = await delete_memory(own.memory_id)
            with pytest.raises(MemoryUnavailable, match="only inside a server run"):
                current_memory()
            outside = await save_memory("no run, no memory")
            down = MemoryGate(_no_database, anonymous_allowed=True).for_attempt(ALICE, "resp_" + "e" * 32)
        finally:
            await close(book)
        return refused, searched, saved, found, gone, outside, down

    refused, searched, saved, found, gone, outside, down = run(scenario())
    assert refused.startswith("Not saved: Memory needs a signed-in user") and "X-Forwarded-Email" in refused
    assert searched.startswith("Memory is unavailable: Memory needs a signed-in user")
    assert saved.startswith("Saved memory mem_") and "the developer's own memory" in found
    assert gone.startswith("Deleted memory mem_")
    assert outside == "Not saved: Memory works only inside a server run."
    assert down == "no database (it is down)"


def _no_database():
    raise MemoryUnavailable("no database (it is down)")


# ----- full-text search --------------------------------------------------------------------------

CITIES = ["Paris", "Lisbon", "Kyoto", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Dakar", "Perth"]
PEOPLE = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Leslie", "Radia"]
ITEMS = ["milk", "stamps", "batteries", "lemons", "rice", "candles", "string", "paint", "bread", "tea"]


def hundreds_of_memories() -> list[str]:
    """299 ordinary memories plus the one about the favourite colour."""
    memories = [f"I visited {CITIES[n % 10]} in {2010 + n // 10}" for n in range(100)]
    memories += [f"My colleague {PEOPLE[n % 10]} works on project {n}" for n in range(100)]
    memories += [f"Reminder {n}: buy {ITEMS[n % 10]}" for n in range(99)]
    return memories + ["My favourite colour is teal"]


def test_full_text_search_over_hundreds_of_memories(pg_url, db_schema):
    async def scenario():
        book = await open_book(pg_url, db_schema, memory_max_per_identity=400)
        try:
            for text in hundreds_of_memories():
                await book.save(ALICE, text)
            await book.save(BOB, "My favourite colour is orange")  # another owner's: never found
            return {query: texts(await book.search(ALICE, query, limit=limit)) for query, limit in [
                ("What is my favourite colour?", 5),
                ("which colours do I like", 5),       # stemming: colours -> colour
                ("Which city did I visit in 2013?", 10),
                ("who works on project 42", 3),
                ("what is it", 3),                     # only stop words: the newest
                ("", 3),                               # no words: the newest
                ("quasar nebula", 5),                  # no such word: nothing
            ]}
        finally:
            await close(book)

    found = run(scenario())
    assert found["What is my favourite colour?"] == ["My favourite colour is teal"]
    assert found["which colours do I like"] == ["My favourite colour is teal"]
    visits_2013 = found["Which city did I visit in 2013?"]
    # Memories matching more words of the question come first: the ten visits of 2013.
    assert len(visits_2013) == 10 and all(t.startswith("I visited") and t.endswith("2013") for t in visits_2013)
    assert found["who works on project 42"][0] == "My colleague Alan works on project 42"
    newest = hundreds_of_memories()[::-1][:3]
    assert found["what is it"] == newest and found[""] == newest
    assert found["quasar nebula"] == []


# ----- semantic search ---------------------------------------------------------------------------

@pytest.fixture
def embedding_endpoint(monkeypatch, tmp_path):
    """The fake endpoint, with the Databricks SDK in this process pointed at it."""
    with FakeEmbeddingEndpoint() as fake:
        point_sdk_at(monkeypatch, fake.host, tmp_path)
        yield fake


FACTS = ["my favourite colour is teal", "my favourite food is pizza", "I live in Lisbon",
         "my dog is called Biscuit", "I work at a bakery"]
PARAPHRASE = "Which hue do I like best?"


def test_a_paraphrase_finds_by_meaning_what_full_text_misses(pg_url, db_schema, embedding_endpoint):
    async def scenario():
        book = await open_book(pg_url, db_schema, memory_embedding_endpoint="fake-embed")
        try:
            for fact in FACTS:
                await book.save(ALICE, fact)
            await book.save(BOB, "my favourite colour is orange")
            full_text_only = MemoryBook(book.store, book.limits, SearchMode(None, "full text"))
            return (book.describe(), texts(await book.search(ALICE, PARAPHRASE, limit=3)),
                    texts(await full_text_only.search(ALICE, PARAPHRASE, limit=3)),
                    texts(await book.search(ALICE, "pizza", limit=1)))
        finally:
            await close(book)

    described, by_meaning, by_text, exact = run(scenario())
    assert described["search"] == "semantic" and described["embedding_endpoint"] == "fake-embed"
    assert by_text == []  # no word in common
    assert by_meaning[0] == "my favourite colour is teal" and "my favourite colour is orange" not in by_meaning
    assert exact == ["my favourite food is pizza"]  # an exact word still counts
    sent = embedding_endpoint.embedding_requests()
    # One request per save, then the query (nothing left to embed by then).
    assert [r["body"]["input"] for r in sent[:len(FACTS)]] == [[fact] for fact in FACTS]
    assert {r["body"]["input"][0] for r in sent[len(FACTS) + 1:]} == {PARAPHRASE, "pizza"}
    assert all(r["body"]["model"] == "fake-embed" and r["body"]["encoding_format"] == "float"
               and r["authorization"] == "Bearer fake" for r in sent)


def test_memories_saved_without_embeddings_are_embedded_on_the_next_search(pg_url, db_schema,
                                                                             embedding_endpoint, sql):
    async def scenario():
        plain = await open_book(pg_url, db_schema)  # no endpoint yet
        for fact in FACTS:
            await plain.save(ALICE, fact)
        await close(plain)
        book = await open_book(pg_url, db_schema, memory_embedding_endpoint="fake-embed")
        try:
            embedding_endpoint.failing = True  # an outage: saves and searches still work, by full text
            during = await book.save(ALICE, "my cat likes turquoise blankets")
            while_down = texts(await book.search(ALICE, "blankets"))
            embedding_endpoint.failing = False
            after = texts(await book.search(ALICE, PARAPHRASE, limit=2))
        finally:
            await close(book)
        return during, while_down, after

    during, while_down, after = run(scenario())
    assert during.text == "my cat likes turquoise blankets" and while_down == [during.text]
    assert after[0] == "my favourite colour is teal"
    assert sql(f"SELECT count(*) FROM {db_schema}.memory_embeddings WHERE model = 'fake-embed'") == [(6,)]


def test_without_pgvector_search_stays_full_text_and_says_why(embedded_pg, pg_url, sql):
    """A database where the engine's role may not create the extension (pgvector is not a
    trusted extension): the engine starts, memory works, by full text."""
    name = f"novector_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE ROLE {name} LOGIN")
    sql(f"CREATE DATABASE {name} OWNER {name}")
    url = pg_url.replace("postgresql://postgres:@/postgres", f"postgresql://{name}:@/{name}")

    async def scenario():
        db = await open_database(url, "engine")
        try:
            mode = await search_mode(Store(db), "fake-embed")
            book = MemoryBook(Store(db), MemoryLimits(100, 10), mode)
            await book.save(ALICE, "my favourite colour is teal")
            return mode, texts(await book.search(ALICE, "favourite colour"))
        finally:
            await db.close()

    try:
        mode, found = run(scenario())
    finally:
        sql(f"DROP DATABASE {name} WITH (FORCE)")
        sql(f"DROP ROLE {name}")
    assert mode.name == "full_text" and "pgvector is unavailable" in mode.detail and "fake-embed" in mode.detail
    assert found == ["my favourite colour is teal"]
    with pytest.raises(psycopg.Error):  # (the reason: the role may not create it)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
