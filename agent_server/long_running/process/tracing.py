"""MLflow tracing warm-up.

MLflow builds its tracking store and tracer provider on the first span, which
takes seconds and would block the event loop inside the first run. It is done
once in a thread after start-up, once the agent is imported (see
agent_runtime.py), so it does not slow the import a resumed run waits for.
Runs that start before it has finished run untraced rather than wait
(``TracingWarmUp.ready``): the engine opens no span for them, and MLflow's
autologging (``mlflow.openai.autolog()`` in the agent) is paused from MLflow's
import until the warm-up ends, since its first span would otherwise build the
tracer inside the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from .switch_interval import short_switch_interval

logger = logging.getLogger(__name__)


class TracingWarmUp:
    """Warms MLflow tracing up in a thread; ``ready`` says whether spans are cheap yet."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None
        self._warming = False  # the thread has started: it cannot be interrupted
        self._untraced_logged = False

    def start(self, mlflow_imported: Callable[[], Awaitable[Any]],
              agent_imported: Callable[[], Awaitable[Any]]) -> None:
        """Pause autologging once MLflow is imported; warm up once the agent is."""
        async def warm_up() -> None:
            await mlflow_imported()
            with _autologging_paused():
                await agent_imported()
                self._warming = True
                await asyncio.to_thread(warm_up_tracing)

        self._warming = False
        self._task = asyncio.create_task(warm_up(), name="tracing-warm-up")

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    def ready(self) -> bool:
        done = self.done
        if not done and not self._untraced_logged:
            self._untraced_logged = True
            logger.info("MLflow tracing is still warming up; runs started until then are not traced")
        return done

    async def stop(self) -> None:
        if self._task is not None:
            if not self._warming:
                self._task.cancel()  # still waiting for MLflow: nothing to warm up for any more
            await asyncio.gather(self._task, return_exceptions=True)


def _autologging_paused() -> AbstractContextManager[None]:
    from mlflow.utils.autologging_utils import disable_autologging  # MLflow is imported by now

    return disable_autologging()


def warm_up_tracing() -> None:
    try:
        with short_switch_interval():  # the event loop keeps answering meanwhile
            _warm_up()
    except Exception as exc:  # pragma: no cover - depends on the MLflow version
        logger.debug("MLflow tracing warm-up skipped: %s", exc)


def _warm_up() -> None:
    # Private helpers: if a future MLflow moves them, we only lose the warm-up.
    from mlflow.tracing.provider import _get_tracer, is_tracing_enabled
    from mlflow.tracking._tracking_service.utils import _get_store

    if not is_tracing_enabled():
        return  # tracing is off (mlflow.tracing.disable()): no store or tracer will be built

    _get_store()
    _get_tracer(__name__)
