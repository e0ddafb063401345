"""Who may use memory, and the memory of the attempt running now.

Memory is always one identity's own: :class:`OwnMemory` binds the book to one
owner, and the routes and tools get nothing else. Deployed (on Databricks
Apps) every request carries a forwarded identity; one without it gets no
memory at all, never a shared one and never the app's own: the gate refuses
the anonymous identity there. Locally nothing forwards identities, everyone
is the one anonymous identity, and that identity is the developer's: memory
works.

The engine's handler run makes the attempt's memory current (a context
variable, as ``tool_calls.py`` does for tool calls); the SDKs run tools in
tasks and threads that copy the context, so a tool finds it with
:func:`current_memory`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from dataclasses import dataclass

from ..context import bound
from ..storage.models import MemoryRow
from .book import SEARCH_LIMIT, MemoryBook

#: The anonymous identity (no forwarded identity headers): the empty owner.
ANONYMOUS_OWNER = ""


class MemoryUnavailable(Exception):
    """No memory for this caller or run; the message says why."""


class NoIdentity(MemoryUnavailable):
    """Deployed, and the request carries no forwarded identity."""


@dataclass(frozen=True)
class OwnMemory:
    """One identity's memories; ``response_id`` is the run that saves through it (tools)."""

    book: MemoryBook
    owner: str
    response_id: str | None = None

    async def save(self, text: object, *, save_key: str | None = None) -> MemoryRow:
        return await self.book.save(self.owner, text, response_id=self.response_id, save_key=save_key)

    async def search(self, query: str, limit: int = SEARCH_LIMIT) -> list[MemoryRow]:
        return await self.book.search(self.owner, query, limit)

    async def get(self, memory_id: str) -> MemoryRow | None:
        return await self.book.get(self.owner, memory_id)

    async def page(self, *, limit: int, after: str | None) -> list[MemoryRow]:
        return await self.book.page(self.owner, limit=limit, after=after)

    async def delete(self, memory_id: str) -> bool:
        return await self.book.delete(self.owner, memory_id)

    async def delete_all(self) -> int:
        return await self.book.delete_all(self.owner)


class MemoryGate:
    """Hands out :class:`OwnMemory`. ``book()`` is the connected engine's book (raising
    :class:`MemoryUnavailable` while there is none); ``anonymous_allowed`` is False when deployed."""

    def __init__(self, book: Callable[[], MemoryBook], *, anonymous_allowed: bool):
        self._book = book
        self.anonymous_allowed = anonymous_allowed

    def for_owner(self, owner: str, response_id: str | None = None) -> OwnMemory:
        if owner == ANONYMOUS_OWNER and not self.anonymous_allowed:
            raise NoIdentity("Memory needs a signed-in user: this request carries no forwarded identity "
                             "(X-Forwarded-Email or X-Forwarded-User), so nothing is remembered for it.")
        return OwnMemory(self._book(), owner, response_id)

    def for_attempt(self, owner: str, response_id: str) -> OwnMemory | str:
        """The attempt's memory, or why it has none (said to the model when a tool asks)."""
        try:
            return self.for_owner(owner, response_id)
        except MemoryUnavailable as exc:
            return str(exc)

    def describe(self) -> dict[str, str]:
        return {"anonymous_callers": "allowed" if self.anonymous_allowed else "refused"}


_ATTEMPT: contextvars.ContextVar[OwnMemory | str | None] = contextvars.ContextVar("attempt_memory", default=None)


def attempt_memory(memory: OwnMemory | str) -> contextlib.AbstractContextManager:
    """Make ``memory`` (or the reason there is none) current for the code run inside."""
    return bound(_ATTEMPT, memory)


def current_memory() -> OwnMemory:
    """The running attempt's memory; :class:`MemoryUnavailable` if it has none, or outside a run."""
    memory = _ATTEMPT.get()
    if memory is None:
        raise MemoryUnavailable("Memory works only inside a server run.")
    if isinstance(memory, str):
        raise MemoryUnavailable(memory)
    return memory
