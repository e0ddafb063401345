"""LangGraph runs that resume at their step: one checkpoint thread per response, on the engine's database.

``stream_graph(graph, messages)`` is ``graph.astream`` with LangGraph's
Postgres checkpointer (``langgraph-checkpoint-postgres``, the saver that
``databricks-langchain``'s Lakebase ``AsyncCheckpointSaver`` extends) on the
engine's own connection pool: the same database (embedded PostgreSQL,
``DATABASE_URL`` or Lakebase with its rotating OAuth tokens), its tables in
the engine's schema, nothing to configure. The thread is the response id.
Durability is ``sync``: a finished node's writes are committed before the
next node starts, so a resumed attempt never runs a finished node again.

On a resumed attempt with a checkpoint, the graph continues from it
(``astream(None)``); the messages it had already produced are emitted first
as one update, and the engine drops the ones the log already has (a message
whose events were lost with the crash is stored then). Outside a stored
server run the graph runs without a checkpointer, as it always did.

The engine's retention sweep deletes the checkpoints of responses that ended.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from agent_server.long_running.journal.steps import AttemptSteps, current_steps

logger = logging.getLogger(__name__)

#: Its tables are created once per database (and migrated by the checkpointer's own versions).
SETUP_NAME = "langgraph-checkpointer"
STREAM_MODES = ["updates", "messages"]


async def _checkpointer(steps: AttemptSteps) -> AsyncPostgresSaver:
    # One saver per attempt: a saver serialises its own database calls behind one lock.
    saver = AsyncPostgresSaver(steps.database.pool)
    await steps.database.set_up_once(SETUP_NAME, saver.setup)
    return saver


async def stream_graph(graph: Any, messages: Sequence[Any]) -> AsyncIterator[tuple[str, Any]]:
    """``graph.astream({"messages": messages}, stream_mode=["updates", "messages"])``, resumable at its step."""
    steps = current_steps()
    if steps is None:
        async for chunk in graph.astream({"messages": list(messages)}, stream_mode=STREAM_MODES):
            yield chunk
        return
    graph = graph.copy({"checkpointer": await _checkpointer(steps)})
    config = {"configurable": {"thread_id": steps.response_id}}
    graph_input: dict[str, Any] | None = {"messages": list(messages)}
    if steps.resumed:
        state = await graph.aget_state(config)
        if state.created_at is not None:
            produced = state.values.get("messages", [])[len(messages):]
            logger.info("%s attempt %d: continuing the graph from its checkpoint (%d message(s) produced, "
                        "next: %s)", steps.response_id, steps.attempt_number, len(produced),
                        ", ".join(state.next) or "nothing")
            graph_input = None
            if produced:
                yield "updates", {"checkpoint": {"messages": produced}}
    async for chunk in graph.astream(graph_input, config, stream_mode=STREAM_MODES, durability="sync"):
        yield chunk
