"""Long-term memory tools: the agent remembers a person across conversations.

``save_memory``, ``search_memories`` and ``delete_memory`` work on the calling
person's memories only (the identity the response belongs to); both variants
get them through ``TOOLS`` in ``tools.py``. They answer the model in words,
also when memory refuses (a limit) or is unavailable (no database; deployed,
a request without a user identity), so a run never fails because of them.
The person sees and erases the same memories at ``/memories`` and on the
web page. See docs/memory.md.
"""

from __future__ import annotations

from agent_server.long_running.errors import ApiError
from agent_server.long_running.memory.access import MemoryUnavailable, current_memory
from agent_server.long_running.memory.limits import MemoryRefused
from agent_server.long_running.storage.models import MemoryRow

from . import current_idempotency_key, durable_tool

# What a tool says when memory cannot do what was asked (a database outage is a 503 ApiError).
_PROBLEMS = (MemoryUnavailable, MemoryRefused, ApiError)


@durable_tool
async def save_memory(text: str) -> str:
    """Remember a fact about the user for future conversations (a preference, a detail they share,
    something they ask you to remember). Save one short, self-contained fact per call.

    Args:
        text: The fact, written so it makes sense on its own later.
    """
    try:
        # The call's idempotency key: if the run resumes and this call runs again, nothing is saved twice.
        row = await current_memory().save(text, save_key=current_idempotency_key())
    except _PROBLEMS as exc:
        return f"Not saved: {_reason(exc)}"
    return f"Saved memory {row.memory_id}: {row.text}"


@durable_tool(always_run=True)  # memories change between attempts: always read them afresh
async def search_memories(query: str) -> str:
    """Search what you remember about the user from earlier conversations. Use it when an answer
    may depend on something they told you before (their preferences, their details).

    Args:
        query: What to look for, in words (an empty query lists the newest memories).
    """
    try:
        rows = await current_memory().search(query)
    except _PROBLEMS as exc:
        return f"Memory is unavailable: {_reason(exc)}"
    if not rows:
        return "No memories match."
    return f"{len(rows)} {'memory' if len(rows) == 1 else 'memories'} found:\n" + "\n".join(map(_line, rows))


@durable_tool
async def delete_memory(memory_id: str) -> str:
    """Forget one memory about the user (when they ask you to forget something, or it is wrong).

    Args:
        memory_id: The memory's id, as search_memories shows it (mem_...).
    """
    try:
        deleted = await current_memory().delete(memory_id)
    except _PROBLEMS as exc:
        return f"Not deleted: {_reason(exc)}"
    return f"Deleted memory {memory_id}." if deleted else f"There is no memory {memory_id} of this user."


MEMORY_TOOLS = [save_memory, search_memories, delete_memory]


def _line(row: MemoryRow) -> str:
    return f"- {row.text} ({row.memory_id}, saved {row.created_at.date().isoformat()})"


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, (MemoryRefused, ApiError)) else str(exc)
