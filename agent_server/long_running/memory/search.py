"""Finding memories: Postgres full-text search always; semantic search too when an embedding
endpoint is configured and pgvector is available.

Which one is active is decided once, when the engine connects (:func:`search_mode`), logged,
and shown by ``/health``. Full-text search matches any word of the query (English stemming,
stop words left out), best match first; a query of no words lists the newest memories.
Semantic search embeds the query and ranks the owner's memories by cosine distance; both
rankings are then merged (reciprocal rank fusion), so a paraphrase that shares no word with a
memory still finds it, and an exact word still counts. Memories saved before the endpoint
was configured, or while it failed, are embedded when their owner next searches. A failing
endpoint never fails a save or a search: they fall back to full text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from ..storage.bounded import short_reason
from ..storage.models import MemoryRow
from ..storage.store import Store
from .embeddings import EmbeddingEndpoint

logger = logging.getLogger(__name__)

#: At most this many of an owner's memories are embedded on one search (the rest on later ones).
BACKFILL_PER_SEARCH = 100
#: Reciprocal rank fusion's constant: how much a first place outweighs a later one.
_FUSION_K = 60
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class SearchMode:
    """The active search: ``endpoint`` is None for full-text only; ``detail`` says why, in words."""

    endpoint: EmbeddingEndpoint | None
    detail: str

    @property
    def name(self) -> str:
        return "semantic" if self.endpoint is not None else "full_text"


async def search_mode(store: Store, endpoint_name: str | None) -> SearchMode:
    """Semantic search if an endpoint is named and pgvector can be enabled; else full text."""
    if not endpoint_name:
        return SearchMode(None, "full-text search (set DATABRICKS_EMBEDDING_ENDPOINT for semantic search too)")
    try:
        await store.enable_memory_embeddings()
    except psycopg.Error as exc:
        return SearchMode(None, f"full-text search only: DATABRICKS_EMBEDDING_ENDPOINT is {endpoint_name}, but "
                                f"pgvector is unavailable ({short_reason(exc)})")
    return SearchMode(EmbeddingEndpoint(endpoint_name),
                      f"semantic search (embedding endpoint {endpoint_name}, pgvector) and full-text search")


async def find(store: Store, mode: SearchMode, owner: str, query: str, limit: int) -> list[MemoryRow]:
    """``owner``'s memories that best match ``query``, best first."""
    # Any word may match: a question shares only some words with the fact that answers it.
    words = " or ".join(_WORD.findall(query))
    by_text = await store.search_memories_text(owner, words, limit=limit)
    if mode.endpoint is None or not words:
        return by_text
    try:
        await _embed_missing(store, mode.endpoint, owner)
        [vector] = await mode.endpoint.embed([query])
        by_meaning = await store.search_memories_semantic(owner, model=mode.endpoint.name, embedding=vector,
                                                          limit=limit)
    except Exception as exc:  # the endpoint (or its answer) failed: full text still answers
        logger.warning("Semantic memory search failed, full-text results only: %s", short_reason(exc))
        return by_text
    return fused([by_meaning, by_text], limit)


async def index(store: Store, mode: SearchMode, rows: Sequence[MemoryRow]) -> None:
    """Embed newly saved memories (best effort: one left out is embedded on a later search)."""
    if mode.endpoint is None or not rows:
        return
    try:
        vectors = await mode.endpoint.embed([row.text for row in rows])
        await store.store_memory_embeddings(mode.endpoint.name, [(row.memory_id, v) for row, v in zip(rows, vectors)])
    except Exception as exc:
        logger.warning("Could not embed %d memor%s now (searches embed them later): %s",
                       len(rows), "y" if len(rows) == 1 else "ies", short_reason(exc))


async def _embed_missing(store: Store, endpoint: EmbeddingEndpoint, owner: str) -> None:
    missing = await store.memories_without_embedding(owner, model=endpoint.name, limit=BACKFILL_PER_SEARCH)
    if missing:
        vectors = await endpoint.embed([row.text for row in missing])
        await store.store_memory_embeddings(endpoint.name, [(row.memory_id, v) for row, v in zip(missing, vectors)])


def fused(rankings: Sequence[Sequence[MemoryRow]], limit: int) -> list[MemoryRow]:
    """Reciprocal rank fusion: each ranking gives a memory 1 / (k + its place); highest sum first
    (ties keep the order of the rankings as given)."""
    scores: dict[str, float] = {}
    rows: dict[str, MemoryRow] = {}
    for ranking in rankings:
        for place, row in enumerate(ranking):
            scores[row.memory_id] = scores.get(row.memory_id, 0.0) + 1.0 / (_FUSION_K + place)
            rows.setdefault(row.memory_id, row)
    return sorted(rows.values(), key=lambda row: -scores[row.memory_id])[:limit]
