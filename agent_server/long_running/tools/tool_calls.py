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
copy the context, so the wrapper finds it there. :func:`run_recorded` is the
same record-or-serve step for a tool the SDK adapters wrap whole (a tool
declared the SDK's own way, an MCP tool), whatever its type.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from ..context import bound
from ..storage.models import RecordedToolCall

logger = logging.getLogger(__name__)


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


def attempt_tool_calls(calls: AttemptToolCalls) -> contextlib.AbstractContextManager[AttemptToolCalls]:
    """Make ``calls`` the current attempt's for the code run inside (the engine's handler run)."""
    return bound(_ATTEMPT, calls)


def sdk_call_id(call_id: str | None) -> contextlib.AbstractContextManager:
    """The SDK's id of the tool call running inside (set by each SDK's tool adapter)."""
    return bound(_SDK_CALL_ID, call_id)


def current_sdk_call_id() -> str | None:
    return _SDK_CALL_ID.get()


_IDEMPOTENCY_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("tool_call_idempotency_key",
                                                                              default=None)


def current_idempotency_key() -> str | None:
    """The running tool call's idempotency key: the same in every attempt of the response.

    Pass it to outside systems that deduplicate (payment, email, ticket APIs),
    so a call that was interrupted and runs again does not act twice. It is
    ``resp_...:<tool>:<arguments digest>:<n>`` (the n-th call of this tool with
    these arguments). None outside a server run.
    """
    return _IDEMPOTENCY_KEY.get()


@contextlib.contextmanager
def idempotency_key(key: str) -> Iterator[None]:
    """``key`` is the idempotency key of the tool call running inside."""
    token = _IDEMPOTENCY_KEY.set(key)
    try:
        yield
    finally:
        _IDEMPOTENCY_KEY.reset(token)


def served_from_record(calls: AttemptToolCalls, key: str, name: str, always_run: bool) -> RecordedToolCall | None:
    """The record to serve instead of running the call (None: run it), and the log line that says so."""
    recorded = None if always_run else calls.recorded(key)
    if recorded is not None:
        logger.info("%s: serving %s from attempt %d's record instead of running it again",
                    key, name, recorded.attempt_number)
    return recorded


def fallback_call_id(key: str) -> str:
    """A call id for a record whose SDK did not say the model's (stable: derived from the key)."""
    return "call_" + hashlib.sha256(key.encode()).hexdigest()[:24]


async def run_recorded(name: str, arguments: dict[str, Any], run: Callable[[], Awaitable[Any]], *,
                       call_id: str | None, always_run: bool = False,
                       recordable: Callable[[Any], Any] = as_json,
                       rebuild: Callable[[Any], Any] = lambda output: output) -> Any:
    """One call of a tool an SDK adapter wraps whole: served from an earlier attempt's record, or run
    (with its idempotency key set) and recorded before its result goes back to the SDK.

    ``recordable(result)`` is what to store of the SDK's result (None: nothing can be, the call is
    not recorded); ``rebuild(output)`` turns a stored output back into the SDK's result. Outside
    a server run it just runs.
    """
    calls = current_attempt()
    if calls is None:
        return await run()
    arguments = as_json(arguments)
    key = calls.next_key(name, arguments)
    if (recorded := served_from_record(calls, key, name, always_run)) is not None:
        return rebuild(recorded.output)
    with idempotency_key(key):
        result = await run()
    output = recordable(result)
    if output is not None:
        await calls.record(RecordedToolCall(key=key, name=name, arguments=arguments, output=as_json(output),
                                            call_id=call_id or fallback_call_id(key),
                                            attempt_number=calls.attempt_number))
    return result
