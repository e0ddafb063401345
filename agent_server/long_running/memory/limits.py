"""What one identity may keep: how long one memory may be, how many memories, and text the
database can store. A memory outside these is refused with a reason a person (REST: a 400) or
the model (a tool's result) can act on; nothing is stored."""

from __future__ import annotations

from dataclasses import dataclass


class MemoryRefused(Exception):
    """A memory that is not saved, and why."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class MemoryLimits:
    max_chars: int
    max_per_identity: int

    def checked_text(self, text: object) -> str:
        """``text`` as it is stored (surrounding white space dropped), or :class:`MemoryRefused`."""
        if not isinstance(text, str):
            raise MemoryRefused(f"A memory's text must be a string, got {type(text).__name__}.", "invalid_memory")
        text = text.strip()
        if not text:
            raise MemoryRefused("A memory needs some text.", "invalid_memory")
        if len(text) > self.max_chars:
            raise MemoryRefused(f"A memory may be at most {self.max_chars} characters; this one has {len(text)}. "
                                "Keep a shorter summary of it.", "memory_too_long")
        if not storable(text):
            raise MemoryRefused("A memory's text may not hold a NUL character or an unpaired surrogate.",
                                "invalid_memory")
        return text

    def full(self) -> MemoryRefused:
        return MemoryRefused(f"The limit of {self.max_per_identity} memories per person is reached: forget "
                             "some first (delete_memory, or DELETE /memories/{id}).", "memory_limit_reached")


def storable(text: str) -> bool:
    """Whether Postgres can store ``text``: no NUL, valid UTF-8 (no unpaired surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def searchable(query: str) -> str:
    """A search query the database accepts: what it cannot store becomes a space."""
    return "".join(c if storable(c) else " " for c in query)
