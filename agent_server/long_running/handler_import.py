"""Importing the agent after start-up.

The module that registers the ``@stream()`` / ``@invoke()`` handlers usually
imports an agent SDK (OpenAI Agents, LangGraph: seconds of imports). Nothing
before the first attempt needs it: ``/health``, storing a background request,
claiming a dead worker's runs and writing the resumed attempt's first event
do not. So the server imports it in a thread once it has started, and an
attempt waits (without blocking the event loop) until it is done. If the
import fails the server cannot run anything: it logs why and stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class HandlerImport:
    """``load()`` (which registers the handlers) run in a thread after start-up."""

    def __init__(self, load: Callable[[], Any] | None = None):
        self._load = load
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._load is not None and self._task is None:
            self._task = asyncio.create_task(asyncio.to_thread(self._load), name="handler-import")
            self._task.add_done_callback(_stop_if_failed)

    @property
    def done(self) -> bool:
        return self._task is None or self._task.done()

    async def wait(self) -> None:
        """Until the handlers are registered (at once if they were at import)."""
        if self._task is not None and not self._task.done():
            await asyncio.shield(self._task)


def _stop_if_failed(task: asyncio.Task) -> None:
    if task.cancelled() or task.exception() is None:
        return
    logger.error("Importing the agent failed; stopping the server", exc_info=task.exception())
    # The same as Ctrl-C / a platform stop: uvicorn shuts down cleanly.
    os.kill(os.getpid(), signal.SIGTERM)
