"""``previous_response_id``: the conversation a new response continues.

A stored request's ``input`` is the whole conversation its handler received,
so a response's conversation is its input followed by the output it finally
committed; continuing it is one read. Only committed output joins: a crashed
attempt's partial items never do, and a resumed attempt re-reads the same
stored input, so it sees the conversation as it was when the response started.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError
from .http_input import RESPONSE_ID
from .store import Store


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, code="invalid_previous_response", param="previous_response_id")


async def conversation_so_far(store: Store, previous_response_id: Any, owner: str) -> list[dict[str, Any]]:
    """The input and final output of ``previous_response_id``, as input items."""
    if not isinstance(previous_response_id, str) or not RESPONSE_ID.match(previous_response_id):
        raise _invalid(f"previous_response_id {str(previous_response_id)[:80]!r} is not a response id "
                       "('resp_' followed by 32 lowercase hex digits).")
    row = await store.get_response(previous_response_id, owner)
    if row is None:
        raise _invalid(f"No response with id '{previous_response_id}' found to continue.")
    if not row.status.is_terminal:
        raise _invalid(f"Response '{previous_response_id}' is still {row.status.value}; continue it once it has "
                       "finished (or cancel it first).")
    # A failed or cancelled response contributes what it committed: its input and the items it finished.
    return [*(row.request.get("input") or []), *(row.output or [])]
