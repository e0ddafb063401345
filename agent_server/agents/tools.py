"""Tools both agent variants use, as plain Python functions.

Each SDK wraps them in its own tool type (``function_tool`` for the OpenAI
Agents SDK, ``StructuredTool`` for LangGraph); the docstrings and type hints
become the schema the model sees. Add a tool here and list it in ``TOOLS``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timezone

logger = logging.getLogger(__name__)

RESEARCH_STEPS = ("finding sources", "reading sources", "extracting facts", "cross-checking", "writing notes")


def _max_research_seconds() -> float:
    return float(os.environ.get("RESEARCH_MAX_SECONDS", "600"))


def get_current_time() -> str:
    """Get the current date and time in UTC (ISO 8601)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


async def research(topic: str, seconds: float = 10.0) -> str:
    """Research a topic in several steps; takes about `seconds` seconds (a demo of a long-running tool).

    Args:
        topic: What to research.
        seconds: How long the research should take, in seconds.
    """
    # Clamped so a model (or user) cannot park a worker for hours by accident.
    seconds = min(max(float(seconds), 0.0), _max_research_seconds())
    pause = seconds / len(RESEARCH_STEPS)
    notes = []
    for number, step in enumerate(RESEARCH_STEPS, start=1):
        await asyncio.sleep(pause)
        # Progress shows in the server log while the run is in the background.
        logger.info("research %r: step %d/%d %s", topic, number, len(RESEARCH_STEPS), step)
        notes.append(f"step {number}/{len(RESEARCH_STEPS)}: {step} done")
    return f"Research on {topic!r} finished after {seconds:g}s. " + "; ".join(notes) + "."


TOOLS = [get_current_time, research]
