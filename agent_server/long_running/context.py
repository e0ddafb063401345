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


#: Whether the engine traces the attempt running in this context (runs that start while MLflow's
#: tracing still warms up are not traced); an agent SDK with a tracing switch of its own reads it.
_TRACED: contextvars.ContextVar[bool] = contextvars.ContextVar("agent_server_attempt_traced", default=True)


def traced_attempt(traced: bool) -> contextlib.AbstractContextManager[bool]:
    return bound(_TRACED, traced)


def attempt_is_traced() -> bool:
    return _TRACED.get()
