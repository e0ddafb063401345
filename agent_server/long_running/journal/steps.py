"""What a handler that resumes at the step is given for one attempt, and how it says it does.

``@resumes_at_step`` under ``@stream()`` marks a handler whose SDK adapter
continues a resumed run where the last attempt stopped: the OpenAI Agents
SDK adapter replays the journal of model calls (``model_calls.py``), the
LangGraph adapter continues from the graph's last checkpoint. Such a
handler is given the original request on every attempt (no ``[RECOVERY]``
message: the replay needs the same input), and its adapter finds the
attempt's :class:`AttemptSteps` through :func:`current_steps`. Any other
handler keeps the recovery message (``runs/recovery.py``).

The engine sets the steps in a context variable for the handler's run, as
it does for tool calls; an unstored run (no later attempt) has none.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..context import bound
from ..storage.store import Store
from .approvals import AttemptApprovals
from .model_calls import ModelCallJournal

H = TypeVar("H", bound=Callable[..., Any])


def resumes_at_step(handler: H) -> H:
    """Mark ``handler`` (put it under ``@stream()``) as continuing a resumed run at its step."""
    handler.resumes_at_step = True
    return handler


def handler_resumes_at_step(handler: Any) -> bool:
    """Whether ``handler``, or a function it wraps, is marked with :func:`resumes_at_step`."""
    while handler is not None:
        if getattr(handler, "resumes_at_step", False) is True:
            return True
        handler = getattr(handler, "__wrapped__", None)
    return False


class CheckpointDatabase(Protocol):
    """The engine's database as a checkpointer uses it."""

    @property
    def pool(self) -> Any:
        """The engine's psycopg ``AsyncConnectionPool`` (autocommit, dict rows, search path = its schema)."""

    async def set_up_once(self, name: str, setup: Callable[[], Awaitable[None]]) -> None:
        """Run ``setup`` once per process and database, one worker at a time."""


@dataclass
class AttemptSteps:
    """One attempt of a response, as the SDK adapters that resume at the step see it."""

    response_id: str
    attempt_number: int
    resumed: bool  # an earlier attempt ran: continue where it stopped
    model_calls: ModelCallJournal
    database: CheckpointDatabase
    approvals: AttemptApprovals


_STEPS: contextvars.ContextVar[AttemptSteps | None] = contextvars.ContextVar("attempt_steps", default=None)


def current_steps() -> AttemptSteps | None:
    """The steps of the attempt running in this context (None outside a stored server run)."""
    return _STEPS.get()


def attempt_steps(steps: AttemptSteps | None) -> contextlib.AbstractContextManager:
    """Make ``steps`` the current attempt's for the code run inside (the engine's handler run)."""
    return bound(_STEPS, steps)


class StoreCheckpointDatabase:
    """:class:`CheckpointDatabase` over the engine's store (``storage/store.py``)."""

    def __init__(self, store: Store):
        self._store = store

    @property
    def pool(self) -> Any:
        return self._store.db.pool

    async def set_up_once(self, name: str, setup: Callable[[], Awaitable[None]]) -> None:
        await self._store.set_up_once(name, setup)
