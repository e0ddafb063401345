"""LangGraph runs that resume at their step and pause for approvals, on the engine's database.

``stream_graph(graph, messages)`` runs the graph on the messages and yields
Responses events (through ``events.py``). In a stored server run the graph
gets LangGraph's Postgres checkpointer (``langgraph-checkpoint-postgres``,
the saver that ``databricks-langchain``'s Lakebase ``AsyncCheckpointSaver``
extends) on the engine's own connection pool: the same database (embedded
PostgreSQL, ``DATABASE_URL`` or Lakebase with its rotating OAuth tokens),
its tables in the engine's schema, nothing to configure. The thread is the
response id. Durability is ``sync``: a finished node's writes are committed
before the next node starts, so a resumed attempt never runs a finished
node again.

On a resumed attempt with a checkpoint, the graph continues from it
(``astream(None)``); the messages it had already produced are emitted first
as one update, and the engine drops the ones the log already has (a message
whose events were lost with the crash is stored then).

A tool that needs approval pauses the graph with ``interrupt()``
(``tools.py``): each pending interrupt becomes a request, stored with the
thread and the interrupt's id. The response that answers resumes that
thread with ``Command(resume=...)``, one answer per interrupt, in whichever
worker runs it. Outside a stored server run the graph runs without a
checkpointer, as it always did.

The engine's retention sweep deletes the checkpoints no run needs any more.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import Command

from agent_server.long_running.journal.steps import AttemptSteps, current_steps
from agent_server.long_running.storage.models import AnsweredApproval

from .events import responses_events
from .tools import APPROVAL

logger = logging.getLogger(__name__)

#: Its tables are created once per database (and migrated by the checkpointer's own versions).
SETUP_NAME = "langgraph-checkpointer"
STREAM_MODES = ["updates", "messages"]


async def _checkpointer(steps: AttemptSteps) -> AsyncPostgresSaver:
    # One saver per attempt: a saver serialises its own database calls behind one lock.
    saver = AsyncPostgresSaver(steps.database.pool)
    await steps.database.set_up_once(SETUP_NAME, saver.setup)
    return saver


def _resume_command(answered: list[AnsweredApproval]) -> Command:
    """One answer per interrupt the paused graph waits on (a declined one is not approved)."""
    return Command(resume={json.loads(answer.state)["interrupt_id"]: {
        "approve": answer.approved, "status": answer.status, "reason": answer.reason} for answer in answered})


async def _chunks(graph: Any, graph_input: Any, config: dict, restored: list[Any],
                  interrupts: list[Any]) -> AsyncIterator[tuple[str, Any]]:
    """The messages restored from a checkpoint as one update, then the run's chunks (its interrupts
    are kept in ``interrupts``)."""
    if restored:
        yield "updates", {"checkpoint": {"messages": restored}}
    async for mode, payload in graph.astream(graph_input, config, stream_mode=STREAM_MODES, durability="sync"):
        if mode == "updates" and isinstance(payload, dict) and "__interrupt__" in payload:
            interrupts.extend(payload["__interrupt__"])
        yield mode, payload


async def stream_graph(graph: Any, messages: Sequence[Any]) -> AsyncIterator[dict]:
    """The graph run on ``messages`` as Responses events, resumable at its step, paused for approvals."""
    steps = current_steps()
    if steps is None:
        async for event in responses_events(graph.astream({"messages": list(messages)}, stream_mode=STREAM_MODES)):
            yield event
        return
    graph = graph.copy({"checkpointer": await _checkpointer(steps)})
    answered = await steps.approvals.answered()
    answers = any(answer.status in ("approved", "rejected") for answer in answered)
    # Answering approvals continues the paused graph's thread; anything else runs on its own.
    thread = (answered[0].thread_id if answers else None) or steps.response_id
    config = {"configurable": {"thread_id": thread}}
    graph_input: Any = _resume_command(answered) if answers else {"messages": list(messages)}
    produced_before = json.loads(answered[0].state)["messages"] if answers else len(messages)
    restored: list[Any] = []
    if steps.resumed:
        state = await graph.aget_state(config)
        answered_ids = {json.loads(answer.state)["interrupt_id"] for answer in answered} if answers else set()
        if state.created_at is not None and not any(i.id in answered_ids for i in state.interrupts):
            restored = state.values.get("messages", [])[produced_before:]
            logger.info("%s attempt %d: continuing the graph from its checkpoint (%d message(s) produced, "
                        "next: %s)", steps.response_id, steps.attempt_number, len(restored),
                        ", ".join(state.next) or "nothing")
            graph_input = None
    interrupts: list[Any] = []
    async for event in responses_events(_chunks(graph, graph_input, config, restored, interrupts)):
        yield event
    for event in await _approval_events(graph, config, steps, thread, interrupts):
        yield event


async def _approval_events(graph: Any, config: dict, steps: AttemptSteps, thread: str,
                           interrupts: list[Any]) -> list[dict]:
    """The graph paused for approvals: store each request (thread and interrupt id); their output items."""
    requests = [interruption for interruption in interrupts
                if isinstance(interruption.value, dict) and APPROVAL in interruption.value]
    if len(requests) != len(interrupts):
        logger.warning("%s: the graph paused on an interrupt that is not an approval request; "
                       "only approval requests can be answered", steps.response_id)
    if not requests:
        return []
    produced = len((await graph.aget_state(config)).values.get("messages", []))
    events = []
    for interruption in requests:
        asked = interruption.value[APPROVAL]
        item = await steps.approvals.ask(
            name=asked["name"], arguments=asked["arguments"], call_id=asked["call_id"],
            server_label=asked["server_label"], thread_id=thread,
            state=json.dumps({"interrupt_id": interruption.id, "messages": produced}))
        events.append({"type": "response.output_item.done", "item": item})
    return events
