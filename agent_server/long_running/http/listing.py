"""``GET /responses``: the caller's own responses, newest first, a page at a time.

Our extension to the OpenAI API (which has no list of responses). The page
has the shape of OpenAI's other lists: ``{"object": "list", "data", "first_id",
"last_id", "has_more"}``; the next page is ``?after=<last_id>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..ids import RESPONSE_ID
from ..errors import ApiError
from ..storage.models import ResponseSummary, Status
from ..events.response_object import list_object
from ..storage.store import Store
from .paging import page_of

_STATUSES = ", ".join(s.value for s in Status)


async def list_page(store: Store, owner: str, params: Mapping[str, str]) -> dict[str, Any]:
    """One page of ``owner``'s responses for the query parameters ``limit``, ``after``, ``status`` and
    ``waiting=approval``."""
    page = page_of(params, ordered=False)
    limit, after = page.limit, _after(page.after)
    status = _status(params.get("status"))
    waiting = _waiting(params.get("waiting"))
    # One row more than asked for says whether there is another page.
    rows = await store.list_responses(owner, limit=limit + 1, after=after, status=status, waiting=waiting)
    if after is not None and not rows and await store.get_response(after, owner) is None:
        # An empty page would look like the end of the list; say the cursor is wrong instead.
        raise ApiError(400, f"after: no response with id '{after}' found.", code="invalid_parameter", param="after")
    return list_object([summary_object(row) for row in rows[:limit]], has_more=len(rows) > limit)


def summary_object(row: ResponseSummary) -> dict[str, Any]:
    """A Response object without ``output``, plus when it ran and what it was asked."""
    return {
        "id": row.response_id,
        "object": "response",
        "created_at": int(row.created_at.timestamp()),
        "status": row.status.value,
        "background": True,
        "model": row.model,
        "error": row.error,
        "incomplete_details": row.incomplete_details,
        "metadata": {"trace_id": row.trace_id} if row.trace_id else {},
        "attempt_number": row.attempt_number,
        "started_at": _epoch(row.started_at),
        "completed_at": _epoch(row.completed_at),
        "duration_seconds": round(max(row.duration_seconds, 0.0), 3),
        "input_preview": row.input_preview,
        "pending_approvals": row.pending_approvals,
    }


def _epoch(value: datetime | None) -> float | None:
    return round(value.timestamp(), 3) if value is not None else None


def _after(value: str | None) -> str | None:
    if value is None:
        return None
    if not RESPONSE_ID.match(value):
        raise ApiError(400, f"after must be a response id ('resp_' followed by 32 lowercase hex digits), "
                       f"got {value[:80]!r}.", code="invalid_parameter", param="after")
    return value


def _status(value: str | None) -> Status | None:
    if value is None:
        return None
    try:
        return Status(value)
    except ValueError:
        raise ApiError(400, f"status must be one of {_STATUSES}, got {value[:40]!r}.",
                       code="invalid_parameter", param="status") from None


def _waiting(value: str | None) -> bool:
    """``waiting=approval``: only the responses with a request waiting for an answer."""
    if value is None:
        return False
    if value != "approval":
        raise ApiError(400, f"waiting must be 'approval' (the responses waiting for an approval), got "
                       f"{value[:40]!r}.", code="invalid_parameter", param="waiting")
    return True
