"""SIGTERM hands over at once, and the process exits within a bound.

uvicorn, on SIGTERM, stops accepting and then waits for every open connection
to close before it runs the app's shutdown; a live SSE stream of an hour-long
run would hold it for an hour (and Databricks Apps SIGKILLs an app 15 s after
SIGTERM, leaving its runs to wait for the stale threshold). So the server
hooks the signal itself, in front of uvicorn's handler: the callback ends every
live stream (with ``server_shutting_down``) and starts handing this worker's
runs over (cancel the attempts, release their leases) at once, while uvicorn
goes on with its own shutdown. uvicorn's ``timeout_graceful_shutdown`` bounds
whatever request is still open, the hand-over and the pool's close get what is
left of ``shutdown_timeout_seconds``, and a watchdog ends the process if
anything still hangs (a frozen database) when the bound is spent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# Run before a forced exit, e.g. stop the embedded PostgreSQL this process started. Per
# process, not per server object: `python -m app` serves a second instance of the server
# class (uvicorn imports the module by name), not the one whose run() started the database.
_LAST_WORDS: list[Callable[[], None]] = []


def on_forced_exit(callback: Callable[[], None]) -> None:
    _LAST_WORDS.append(callback)


class ShutdownSignal:
    def __init__(self, timeout_seconds: float):
        self.timeout_seconds = timeout_seconds
        self._previous: dict[int, Any] = {}
        self._deadline: float | None = None

    def install(self, on_signal: Callable[[], None]) -> None:
        """Call ``on_signal`` in the event loop when SIGTERM or SIGINT arrives, then uvicorn's handler."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread (a server run in a thread is stopped otherwise)
        loop = asyncio.get_running_loop()

        def handler(signum: int, frame: Any) -> None:
            if self._deadline is None:
                self._deadline = time.monotonic() + self.timeout_seconds
                logger.info("Signal %d: ending live streams and handing runs over (exit within %gs)",
                            signum, self.timeout_seconds)
                loop.call_soon_threadsafe(on_signal)
                self._start_watchdog(self.timeout_seconds + 1.0)
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)

        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, handler)

    def bound_the_rest(self) -> threading.Timer | None:
        """The app is shutting down without our hook having seen a signal (uvicorn caught it
        before start-up finished): bound the rest the same way. Returns the watchdog, to cancel
        once shutdown is done; None if a signal already started one or the hook is not installed."""
        if self._deadline is not None or not self._previous:
            return None
        self._deadline = time.monotonic() + self.timeout_seconds
        return self._start_watchdog(self.timeout_seconds + 1.0)

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous)
            except (ValueError, TypeError):
                pass
        self._previous.clear()

    def remaining(self) -> float:
        """Seconds left of the bound (the whole bound when no signal came: a lifespan ending otherwise)."""
        if self._deadline is None:
            return self.timeout_seconds
        return max(self._deadline - time.monotonic(), 0.1)

    async def within_bound(self, handover: Awaitable[Any] | None, close_pool: Callable[[], Awaitable[Any]]) -> None:
        """Wait for the hand-over, then close the pool, both within what is left of the bound."""
        budget = self.remaining()
        if handover is not None:
            # asyncio.wait, not wait_for: cancelling a statement stuck on a frozen
            # database waits seconds for the server; the process is ending anyway.
            done, _ = await asyncio.wait({asyncio.ensure_future(handover)}, timeout=budget * 0.7)
            if not done:
                logger.warning("Hand-over did not finish within the shutdown bound; unreleased runs "
                               "resume once their lease is stale")
        try:
            await asyncio.wait({asyncio.ensure_future(close_pool())}, timeout=max(self.remaining() - 0.3, 0.1))
        except Exception as exc:
            logger.warning("Closing the database pool failed: %s", exc)


    def _start_watchdog(self, seconds: float) -> threading.Timer:
        """Last resort: end the process if it is still alive ``seconds`` after the signal (e.g.
        MLflow's tracing warm-up thread, which the interpreter waits for, still running)."""

        def expire() -> None:
            logger.error("Still running %.1fs after the shutdown signal; exiting now", seconds)
            for callback in _LAST_WORDS:
                try:
                    callback()
                except Exception as exc:
                    logger.error("Before exiting: %s", exc)
            os._exit(128 + signal.SIGTERM)

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        return timer
