"""A short GIL switch interval while start-up threads import and warm up.

Importing MLflow and the agent's SDK, and MLflow's tracking-store set-up, run
in threads after the server answers. They hold the GIL for CPU-bound stretches,
and by default the event loop gets it back only every 5 ms: each await in an
accept then waits that long, so the first seconds after ``/health`` answers
slowly. While such a thread runs, the interval is 0.5 ms; the previous value
comes back when the last one is done.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

STARTUP_SWITCH_INTERVAL = 0.0005

_lock = threading.Lock()
_active = 0
_saved = sys.getswitchinterval()


@contextlib.contextmanager
def short_switch_interval() -> Iterator[None]:
    """Within this block (in any thread), the event loop gets the GIL back sooner."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved, STARTUP_SWITCH_INTERVAL))
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                sys.setswitchinterval(_saved)
