"""Per-attempt values the engine sets around a handler run and the code inside reads back."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def bound(variable: contextvars.ContextVar[T], value: T) -> Iterator[T]:
    """``variable`` is ``value`` for the code run inside, and what it was before afterwards."""
    token = variable.set(value)
    try:
        yield value
    finally:
        variable.reset(token)
