"""Tools both agent variants use, as plain Python functions.

Each SDK wraps them in its own tool type (``function_tool`` for the OpenAI
Agents SDK, ``StructuredTool`` for LangGraph); the docstrings and type hints
become the schema the model sees. Add a tool here and list it in ``TOOLS``
(which also holds the long-term memory tools of ``memory_tools.py``).

``@durable_tool`` makes a finished call run exactly once per response: if the
server restarts mid-run, the resumed attempt gets the recorded output instead
of running the tool again. A tool that must run every time (it reads the clock)
says ``always_run=True``. ``current_idempotency_key()`` is the same in every
attempt: pass it to outside systems so a call that was interrupted and runs
again does not act twice. ``needs_approval=True`` makes each call wait for a
person's approval (the run pauses with nothing held; docs/approvals.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timezone

from . import current_idempotency_key, durable_tool
from .memory_tools import MEMORY_TOOLS

logger = logging.getLogger(__name__)

RESEARCH_STEPS = ("finding sources", "reading sources", "extracting facts", "cross-checking", "writing notes")


def _max_research_seconds() -> float:
    return float(os.environ.get("RESEARCH_MAX_SECONDS", "600"))


@durable_tool(always_run=True)  # a recorded time would be stale
def get_current_time() -> str:
    """Get the current date and time in UTC (ISO 8601)."""
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    logger.info("get_current_time (idempotency key %s): %s", current_idempotency_key(), now)
    return now


@durable_tool
async def research(topic: str, seconds: float = 10.0) -> str:
    """Research a topic in several steps; takes about `seconds` seconds (a demo of a long-running tool).

    Args:
        topic: What to research.
        seconds: How long the research should take, in seconds.
    """
    # Clamped so a model (or user) cannot park a worker for hours by accident.
    seconds = min(max(float(seconds), 0.0), _max_research_seconds())
    pause = seconds / len(RESEARCH_STEPS)
    # A real tool would pass the key to the systems it calls; the demo logs it.
    logger.info("research %r (idempotency key %s): started", topic, current_idempotency_key())
    notes = []
    for number, step in enumerate(RESEARCH_STEPS, start=1):
        await asyncio.sleep(pause)
        # Progress shows in the server log while the run is in the background.
        logger.info("research %r: step %d/%d %s", topic, number, len(RESEARCH_STEPS), step)
        notes.append(f"step {number}/{len(RESEARCH_STEPS)}: {step} done")
    logger.info("research %r (idempotency key %s): finished", topic, current_idempotency_key())
    return f"Research on {topic!r} finished after {seconds:g}s. " + "; ".join(notes) + "."


@durable_tool(needs_approval=True)
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email (a demo: it is only logged). Each call waits for a person's approval first.

    Args:
        to: The recipient's address.
        subject: The subject line.
        body: The text of the email.
    """
    logger.info("send_email to %s (idempotency key %s): %r", to, current_idempotency_key(), subject)
    return f"Email to {to} sent, subject {subject!r}."


# Long-term memory (save, search, delete the caller's memories; see memory_tools.py): drop
# *MEMORY_TOOLS to run without it.
TOOLS = [get_current_time, research, send_email, *MEMORY_TOOLS]
