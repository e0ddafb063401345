"""MLflow tracing warm-up.

MLflow builds its tracking store and tracer provider on the first span, which
takes seconds and would block the event loop inside the first background run.
Doing it once in a thread at start-up makes that first span cheap.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def warm_up_tracing() -> None:
    try:
        # Private helpers: if a future MLflow moves them, we only lose the warm-up.
        from mlflow.tracing.provider import _get_tracer
        from mlflow.tracking._tracking_service.utils import _get_store

        _get_store()
        _get_tracer(__name__)
    except Exception as exc:  # pragma: no cover - depends on the MLflow version
        logger.debug("MLflow tracing warm-up skipped: %s", exc)
