"""The tool calls of one attempt: what earlier attempts finished, and recording new ones.

A finished tool call runs exactly once per response; an unfinished one may
run again. "Finished" means recorded: a tool wrapped with
:func:`~agent_server.long_running.tools.durable_tool.durable_tool` writes its call
(name, arguments, output, call id) to Postgres, and waits for the commit,
before its output goes back to the model. A resumed attempt is given the
earlier attempts' records (as input items, see :func:`resume_input_items`)
and, when the model calls the same tool with the same arguments again, the
recorded output instead of a second run.

Calls are matched by their **call key**, which is also the idempotency key a
tool can pass to outside systems: the response id, the tool's name, a digest
of its arguments, and the occurrence (the n-th call of this tool with these
arguments in the attempt). The model's call ids change from one attempt to
the next; the key does not.

The engine sets the attempt's :class:`AttemptToolCalls` in a context
variable for the handler's run; the SDKs run tools in tasks and threads that
copy the context, so the wrapper finds it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..storage.models import RecordedToolCall


def resume_input_items(calls: Sequence[RecordedToolCall]) -> list[dict[str, Any]]:
    """Every recorded call as a function call followed by its output, in the order they finished."""
    return [item for call in calls for item in call.input_items()]


def as_json(value: Any) -> Any:
    """``value`` as stored (and served again): JSON as it is; a pydantic model as its JSON;
    anything else as its text."""
    if isinstance(value, str):
        return value
    return json.loads(json.dumps(value, default=_json_fallback))


def _json_fallback(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else str(value)


def arguments_digest(arguments: dict[str, Any]) -> str:
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


#: ``record(call)``: stores one finished call durably (returns once committed).
Record = Callable[[RecordedToolCall], Awaitable[None]]


class AttemptToolCalls:
    """One attempt's view of its response's tool calls."""

    def __init__(self, response_id: str, attempt_number: int, prior: Sequence[RecordedToolCall], record: Record):
        self.response_id = response_id
        self.attempt_number = attempt_number
        self._prior = {call.key: call for call in prior}
        self._record = record
        # Synchronous tools run in threads; their records are written on the attempt's loop.
        self.loop = asyncio.get_running_loop()
        self._occurrences: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def next_key(self, name: str, arguments: dict[str, Any]) -> str:
        """The call key of the next call of ``name`` with ``arguments`` in this attempt."""
        digest = arguments_digest(arguments)
        with self._lock:
            self._occurrences[(name, digest)] += 1
            occurrence = self._occurrences[(name, digest)]
        return f"{self.response_id}:{name}:{digest}:{occurrence}"

    def recorded(self, key: str) -> RecordedToolCall | None:
        """The call an earlier attempt finished under ``key``, if any."""
        return self._prior.get(key)

    async def record(self, call: RecordedToolCall) -> None:
        await self._record(call)


_ATTEMPT: contextvars.ContextVar[AttemptToolCalls | None] = contextvars.ContextVar("tool_calls_attempt",
                                                                                    default=None)
_SDK_CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("tool_calls_sdk_call_id", default=None)


def current_attempt() -> AttemptToolCalls | None:
    """The tool calls of the attempt running in this context (None outside a server run)."""
    return _ATTEMPT.get()


@contextlib.contextmanager
def attempt_tool_calls(calls: AttemptToolCalls) -> Iterator[AttemptToolCalls]:
    """Make ``calls`` the current attempt's for the code run inside (the engine's handler run)."""
    token = _ATTEMPT.set(calls)
    try:
        yield calls
    finally:
        _ATTEMPT.reset(token)


@contextlib.contextmanager
def sdk_call_id(call_id: str | None) -> Iterator[None]:
    """The SDK's id of the tool call running inside (set by each SDK's tool adapter)."""
    token = _SDK_CALL_ID.set(call_id)
    try:
        yield
    finally:
        _SDK_CALL_ID.reset(token)


def current_sdk_call_id() -> str | None:
    return _SDK_CALL_ID.get()
