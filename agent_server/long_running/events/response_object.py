"""The OpenAI-style Response object and the server's own events."""

from __future__ import annotations

import json
from typing import Any

import orjson

from ..storage.models import ResponseRow, Status


def dumps(obj: Any) -> str:
    """Compact UTF-8 JSON, the form every stored event takes.

    orjson, because encoding each event is one of the event path's largest
    costs; what it refuses (keys that are not strings, integers past 64 bits)
    the standard library encodes as before, or refuses with the same error."""
    try:
        return orjson.dumps(obj).decode()
    except orjson.JSONEncodeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def build_response(
    *,
    response_id: str,
    created_at: float,
    status: Status,
    model: str,
    output: list[dict[str, Any]],
    attempt_number: int,
    error: dict[str, Any] | None = None,
    trace_id: str | None = None,
    metadata: dict[str, str] | None = None,
    background: bool = True,
    custom_outputs: dict[str, Any] | None = None,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """The Response object in OpenAI's shape (the fields its clients require), plus MLflow's
    ``custom_outputs`` and our ``attempt_number``."""
    response = {
        "id": response_id,
        "object": "response",
        "created_at": int(created_at),
        "status": status.value,
        "background": background,
        "model": model,
        "output": output,
        "error": error,
        "incomplete_details": None,  # no run ends incomplete (there is no output-token limit)
        # The user's keys, and beside them the MLflow trace of the attempt that finished.
        "metadata": {**(metadata or {}), **({"trace_id": trace_id} if trace_id else {})},
        # Required by OpenAI's schema; the engine does not pass tools to the agent.
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "attempt_number": attempt_number,
    }
    if custom_outputs is not None:
        response["custom_outputs"] = custom_outputs
    if conversation_id is not None:
        response["conversation"] = {"id": conversation_id}  # the stored conversation it joins
    return response


def response_from_row(row: ResponseRow, output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The Response object for a stored row; ``output`` overrides the stored one (in-flight runs)."""
    request = row.request or {}
    return build_response(
        response_id=row.response_id,
        created_at=row.created_at.timestamp(),
        status=row.status,
        model=row.model,
        output=output if output is not None else (row.output or []),
        attempt_number=row.attempt_number,
        error=row.error,
        trace_id=row.trace_id,
        metadata=request.get("metadata"),
        background=row.background,
        custom_outputs=row.custom_outputs,
        conversation_id=row.conversation_id,
    )


def event_json(event: dict[str, Any], sequence_number: int, response_id: str) -> str:
    """Stamp an event with its place in the log and serialise it."""
    event["sequence_number"] = sequence_number
    event["response_id"] = response_id
    return dumps(event)


def created_event(response: dict[str, Any]) -> str:
    """Event 0 of every stored response: ``response.created`` with the Response as first stored."""
    return event_json({"type": "response.created", "response": response}, 0, response["id"])


def terminal_event(response: dict[str, Any]) -> dict[str, Any]:
    """``response.completed`` / ``.failed`` / ``.cancelled`` / ``.incomplete``."""
    return {"type": f"response.{response['status']}", "response": response}


def error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def list_object(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's list shape (one page, with the cursors of its ends)."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def terminal_event_data(row: ResponseRow) -> str:
    """The stored terminal event of a response that ends as ``row`` says (its last sequence number)."""
    return event_json(terminal_event(response_from_row(row)), row.last_sequence, row.response_id)
