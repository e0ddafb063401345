"""``MemoryBook``: everyone's memories in the engine's database, every call for one owner.

Saving checks the limits (:mod:`.limits`) and, in the same transaction as the
insert, the owner's count; a save key (the saving tool call's idempotency
key) seen before returns that memory instead of a second one. Searching is
the job of :mod:`.search`. Whose memories a call may touch is decided above this
(:mod:`.access`): the book trusts the owner it is given.
"""

from __future__ import annotations

import logging
from typing import Any

from ..ids import MEMORY_ID, new_memory_id
from ..settings import EngineSettings
from ..storage.models import MemoryRow
from ..storage.store import Store
from .search import SearchMode, find, index, search_mode
from .limits import MemoryLimits, searchable

logger = logging.getLogger(__name__)

#: How many memories a search returns unless asked for fewer.
SEARCH_LIMIT = 5


class MemoryBook:
    def __init__(self, store: Store, limits: MemoryLimits, mode: SearchMode):
        self.store = store
        self.limits = limits
        self.mode = mode

    def describe(self) -> dict[str, Any]:
        """What ``/health`` shows."""
        endpoint = self.mode.endpoint
        return {"status": "ready", "search": self.mode.name, "embedding_endpoint": endpoint.name if endpoint else None,
                "detail": self.mode.detail}

    async def save(self, owner: str, text: object, *, response_id: str | None = None,
                   save_key: str | None = None) -> MemoryRow:
        """Keep ``text`` for ``owner``; raises :class:`~.limits.MemoryRefused` over a limit."""
        text = self.limits.checked_text(text)
        saved = await self.store.insert_memory(memory_id=new_memory_id(), owner=owner, text=text,
                                               response_id=response_id, save_key=save_key,
                                               max_count=self.limits.max_per_identity)
        if saved is None:
            raise self.limits.full()
        row, created = saved
        if created:
            await index(self.store, self.mode, [row])
        return row

    async def search(self, owner: str, query: str, limit: int = SEARCH_LIMIT) -> list[MemoryRow]:
        # A query longer than any memory could be says nothing more (and costs an embedding).
        return await find(self.store, self.mode, owner, searchable(query[:self.limits.max_chars]), limit)

    async def get(self, owner: str, memory_id: str) -> MemoryRow | None:
        if not MEMORY_ID.match(memory_id):  # (a model may pass anything; nothing else can be a memory)
            return None
        return await self.store.get_memory(memory_id, owner)

    async def page(self, owner: str, *, limit: int, after: str | None) -> list[MemoryRow]:
        """Newest first, after the memory ``after`` (none if it is not ``owner``'s)."""
        return await self.store.list_memories(owner, limit=limit, after=after)

    async def delete(self, owner: str, memory_id: str) -> bool:
        if not MEMORY_ID.match(memory_id):
            return False
        return await self.store.delete_memory(memory_id, owner)

    async def delete_all(self, owner: str) -> int:
        return await self.store.delete_memories(owner)


async def open_memory_book(store: Store, setup_store: Store, settings: EngineSettings) -> MemoryBook:
    """The book on ``store`` (the routes' store, bounded in time), its search mode decided now
    (``setup_store`` may enable pgvector, unbounded) and logged."""
    mode = await search_mode(setup_store, settings.memory_embedding_endpoint)
    logger.info("Long-term memory: %s", mode.detail)
    return MemoryBook(store, MemoryLimits(settings.memory_max_chars, settings.memory_max_per_identity), mode)
