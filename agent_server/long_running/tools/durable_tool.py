"""``@durable_tool``: a tool whose finished calls are never run again, and its idempotency key.

Wrap the plain Python function the agent SDKs turn into tools::

    @durable_tool
    async def send_email(to: str, body: str) -> str:
        mailer.send(to, body, idempotency_key=current_idempotency_key())
        return "sent"

    @durable_tool(always_run=True)  # must run every time, e.g. it reads the clock
    def get_current_time() -> str: ...

The wrapper keeps the function's signature, docstring and async-ness, so
each SDK builds the same schema as for the plain function. Inside a server
run it records every finished call before returning its output (see
``tool_calls.py``); when a resumed attempt calls the same tool with the same
arguments again, it returns the recorded output without running the
function, unless the tool is ``always_run``. Outside a server run (a direct
call, a test) it just calls the function.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from .tool_calls import (
    AttemptToolCalls,
    RecordedToolCall,
    as_json,
    current_attempt,
    current_idempotency_key,
    current_sdk_call_id,
    fallback_call_id,
    idempotency_key,
    served_from_record,
)

__all__ = ["current_idempotency_key", "durable_tool"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class _Call:
    """One call of a durable tool within an attempt."""

    def __init__(self, calls: AttemptToolCalls, name: str, arguments: dict[str, Any]):
        self.calls = calls
        self.name = name
        self.arguments = arguments
        self.key = calls.next_key(name, arguments)

    def finished(self, output: Any) -> RecordedToolCall:
        return RecordedToolCall(key=self.key, name=self.name, arguments=self.arguments,
                                output=as_json(output), call_id=current_sdk_call_id() or fallback_call_id(self.key),
                                attempt_number=self.calls.attempt_number)


def _begin(name: str, signature: inspect.Signature, args: tuple, kwargs: dict) -> _Call | None:
    calls = current_attempt()
    if calls is None:
        return None
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()  # a default passed explicitly is the same call
    return _Call(calls, name, as_json(dict(bound.arguments)))


def durable_tool(function: F | None = None, *, always_run: bool = False,
                 needs_approval: bool = False) -> F | Callable[[F], F]:
    """Record each finished call of ``function``; serve a repeat in a resumed attempt from the record.

    ``always_run=True`` opts out of serving: the tool runs on every call
    (its calls are still recorded, so a resumed attempt sees them, and it
    still gets an idempotency key). ``needs_approval=True`` makes each call
    wait for a person's approval first (the agent adapters pause the run;
    see docs/approvals.md).
    """
    if function is None:
        return lambda f: durable_tool(f, always_run=always_run, needs_approval=needs_approval)
    name = function.__name__
    signature = inspect.signature(function)

    def served(call: _Call) -> RecordedToolCall | None:
        return served_from_record(call.calls, call.key, name, always_run)

    if inspect.iscoroutinefunction(function):
        @functools.wraps(function)
        async def async_wrapper(*args, **kwargs):
            call = _begin(name, signature, args, kwargs)
            if call is None:
                return await function(*args, **kwargs)
            if (recorded := served(call)) is not None:
                return recorded.output
            with idempotency_key(call.key):
                output = await function(*args, **kwargs)
            await call.calls.record(call.finished(output))
            return output

        wrapper = async_wrapper
    else:
        @functools.wraps(function)
        def sync_wrapper(*args, **kwargs):
            call = _begin(name, signature, args, kwargs)
            if call is not None and _on_loop_thread(call.calls):
                # Blocking here for the record would block the loop that writes it.
                logger.warning("%s called on the event loop thread: run without a record "
                               "(both SDKs run synchronous tools in threads)", name)
                call = None
            if call is None:
                return function(*args, **kwargs)
            if (recorded := served(call)) is not None:
                return recorded.output
            with idempotency_key(call.key):
                output = function(*args, **kwargs)
            asyncio.run_coroutine_threadsafe(call.calls.record(call.finished(output)), call.calls.loop).result()
            return output

        wrapper = sync_wrapper
    wrapper.always_run = always_run
    wrapper.needs_approval = needs_approval
    return wrapper


def _on_loop_thread(calls: AttemptToolCalls) -> bool:
    try:
        return asyncio.get_running_loop() is calls.loop
    except RuntimeError:
        return False
