"""The ``mcp_approval_response`` items of a request: answers to a paused run's approval requests.

Following OpenAI's Responses convention: a client answers the
``mcp_approval_request`` items of a response with a new response whose
``previous_response_id`` is that response and whose input is one
``{"type": "mcp_approval_response", "approval_request_id": "mcpr_…",
"approve": true|false, "reason": "…"}`` item per request it answers. Checked
here for shape; whether each request can be answered (it exists, is that
response's, is still pending and not expired) is decided when the answering
response is stored, in the same transaction (``storage/store.py``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..storage.models import ApprovalAnswer

ITEM_TYPE = "mcp_approval_response"
MAX_REASON = 2000
MAX_ID = 100


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, code="invalid_approval_response", param="input")


def answers_in(request: dict[str, Any], previous_response_id: Any, store: bool) -> list[ApprovalAnswer]:
    """The request's answers (none: it answers nothing); 400 if they are malformed or misplaced."""
    items = request.get("input")
    if not isinstance(items, list):
        return []
    answers = [item for item in items if isinstance(item, dict) and item.get("type") == ITEM_TYPE]
    if not answers:
        return []
    if len(answers) != len(items):
        raise _invalid(f"A response that answers approval requests has only {ITEM_TYPE} items as its input; "
                       "send a new message in a response of its own.")
    if previous_response_id is None:
        raise ApiError(400, f"{ITEM_TYPE} answers a request of the response it continues: set "
                       "previous_response_id to the response that asked.", code="invalid_approval_response",
                       param="previous_response_id")
    if not store:
        raise ApiError(400, "An answer to an approval request resumes a stored run: drop 'store': false.",
                       code="invalid_approval_response", param="store")
    parsed = [_answer(item) for item in answers]
    ids = [answer.request_id for answer in parsed]
    if len(set(ids)) != len(ids):
        raise _invalid(f"Each approval request is answered once per response; {ITEM_TYPE} repeats "
                       f"'{next(i for i in ids if ids.count(i) > 1)}'.")
    return parsed


def _answer(item: dict[str, Any]) -> ApprovalAnswer:
    request_id = item.get("approval_request_id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_ID:
        raise _invalid(f"{ITEM_TYPE}.approval_request_id must be the id of an mcp_approval_request item "
                       f"('mcpr_…'), got {str(request_id)[:80]!r}.")
    approve = item.get("approve")
    if not isinstance(approve, bool):
        raise _invalid(f"{ITEM_TYPE}.approve must be true or false for '{request_id}', got {str(approve)[:40]!r}.")
    reason = item.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise _invalid(f"{ITEM_TYPE}.reason must be text of at most {MAX_REASON} characters for '{request_id}'.")
    return ApprovalAnswer(request_id, approve, reason or None)


def refused(request_id: str, why: str, expired: bool) -> ApiError:
    """The 400 for an answer the store refused (nothing was stored)."""
    return ApiError(400, f"Approval request '{request_id}' cannot be answered: {why}.",
                    code="approval_expired" if expired else "invalid_approval_response", param="input")
