"""MLflow and the agent, imported after start-up.

Importing MLflow takes seconds, and the module that registers the
``@stream()`` / ``@invoke()`` handlers usually imports an agent SDK (OpenAI
Agents, LangGraph: seconds more). ``/health``, reading stored responses,
cancelling and claiming a dead worker's runs need neither, so the server
starts without them and imports both in one thread once it is up:

1. MLflow, through :mod:`.handler` (the only engine module that imports it):
   validating a new request waits for this;
2. then the agent (``load()``): running a handler waits for this.

The thread is a daemon: a SIGTERM during the import exits at once instead of
waiting for an import no one needs any more. If either step fails, the
server cannot run anything: it logs why and stops itself.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from ..memory.access import MemoryGate
from .switch_interval import short_switch_interval

logger = logging.getLogger(__name__)

_MLFLOW, _AGENT = "mlflow", "agent"


class AgentRuntime:
    """The two imports, done once per process; each event loop that started it can await them."""

    def __init__(self, load: Callable[[], Any] | None = None):
        self.load = load  # registers the handlers (None: they were registered at import)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Finished steps: the handler module (MLflow), None (agent), or the exception that stopped them.
        self._outcomes: dict[str, Any] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, dict[str, asyncio.Future]]] = []
        self._futures: dict[str, asyncio.Future] | None = None
        self._validator: Any = None

    def start(self) -> None:
        """Begin the imports (once per process) and let this loop await them."""
        loop = asyncio.get_running_loop()
        futures = {_MLFLOW: loop.create_future(), _AGENT: loop.create_future()}
        with self._lock:
            for step, outcome in self._outcomes.items():
                _settle(futures[step], outcome)
            self._waiters.append((loop, futures))
            if self._thread is None:
                self._thread = threading.Thread(target=self._import, name="agent-import", daemon=True)
                self._thread.start()
        self._futures = futures

    def stop(self) -> None:
        """This loop is ending: the thread no longer reports to it."""
        with self._lock:
            self._waiters = [(loop, f) for loop, f in self._waiters if f is not self._futures]
        self._futures = None

    @property
    def agent_ready(self) -> bool:
        return _AGENT in self._outcomes and self._outcomes[_AGENT] is None

    async def mlflow(self) -> ModuleType:
        """The :mod:`.handler` module, once MLflow is imported."""
        return await self._wait(_MLFLOW)

    async def agent(self) -> None:
        """Once the agent's handlers are registered."""
        await self._wait(_AGENT)

    def validator(self) -> Any:
        """MLflow's ``ResponsesAgentValidator`` (imports MLflow here if the thread has not yet)."""
        if self._validator is None:
            from ..runs.handler import ResponsesAgentValidator

            self._validator = ResponsesAgentValidator()
        return self._validator

    async def request_validator(self) -> Any:
        """The validator, once MLflow is imported, without blocking the event loop on the import."""
        if self._validator is None:
            await self.mlflow()
        return self.validator()

    async def _wait(self, step: str) -> Any:
        if self._futures is None:
            raise RuntimeError("the server has not started (its lifespan is not running)")
        # Shielded: a request that gives up must not cancel the future every other request waits on.
        return await asyncio.shield(self._futures[step])

    # ----- the thread -----------------------------------------------------------

    def _import(self) -> None:
        try:
            with short_switch_interval(), _no_collections():  # the event loop keeps answering meanwhile
                from ..runs import handler  # MLflow, and MLflow's request model

                self._report(_MLFLOW, handler)
                if self.load is not None:
                    self.load()
            self._report(_AGENT, None)
        except BaseException as raised:  # noqa: BLE001 - whatever stopped the import is reported, not lost
            # (A future cannot carry KeyboardInterrupt or SystemExit to its awaiters.)
            exc = raised if isinstance(raised, Exception) else RuntimeError(f"the import was interrupted: {raised!r}")
            if _MLFLOW not in self._outcomes:
                self._report(_MLFLOW, exc)
            self._report(_AGENT, exc)
            logger.error("Importing the agent failed; stopping the server", exc_info=exc)
            # The same as Ctrl-C or a platform stop: uvicorn shuts down cleanly.
            os.kill(os.getpid(), signal.SIGTERM)

    def _report(self, step: str, outcome: Any) -> None:
        with self._lock:
            self._outcomes[step] = outcome
            for loop, futures in self._waiters:
                try:
                    loop.call_soon_threadsafe(_settle, futures[step], outcome)
                except RuntimeError:
                    pass  # that loop has closed meanwhile: no one there waits


@contextmanager
def _no_collections() -> Iterator[None]:
    """The cyclic GC paused while importing, then everything imported frozen.

    Hundreds of thousands of objects (modules, classes, functions) come with the
    imports and live as long as the process. Each full collection during the
    import walks all of them so far, for nothing (about a sixth of the import's
    time); afterwards, freezing them keeps later collections from walking them
    again while runs allocate."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _settle(future: asyncio.Future, outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
        future.exception()  # retrieved here: a failure no request awaited is logged once, by _import
    else:
        future.set_result(outcome)


class AgentHandler:
    """The worker's handler: runs an attempt through MLflow's registered handler once the agent is
    imported. ``transform`` is the server's ``transform_stream_event``; ``memory`` gives each
    attempt its owner's long-term memory."""

    def __init__(self, runtime: AgentRuntime, transform: Callable[[dict, str], dict],
                 tracing_ready: Callable[[], bool], memory: MemoryGate):
        self._runtime = runtime
        self._transform = transform
        self._tracing_ready = tracing_ready
        self._memory = memory
        self._invoker: Any = None

    async def __call__(self, lease: Any, writer: Any) -> None:
        if self._invoker is None:
            await self._runtime.agent()
            handler = await self._runtime.mlflow()
            self._invoker = handler.HandlerInvoker(await self._runtime.request_validator(), self._transform,
                                                   self._memory, self._tracing_ready)
        await self._invoker(lease, writer)
