"""``Idempotency-Key``: a retried POST /responses returns the first response.

A client that lost the answer to a POST (a time-out, a 503 while the database
was unreachable, a dropped connection) cannot know whether the response was
created; retrying with the same key is then safe. The key is stored with the
response under a unique index per owner, so two concurrent retries create one
response. The same key with a different request body (or background flag) is
a 409: the key names one request, as with OpenAI's and Stripe's clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ApiError
from ..storage.models import ResponseRow
from ..storage.store import Store

HEADER = "idempotency-key"
MAX_LENGTH = 255


def key_of(headers: Mapping[str, str]) -> str | None:
    """The request's Idempotency-Key, or None; a malformed one is a 400."""
    key = headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(400, f"Idempotency-Key must be 1 to {MAX_LENGTH} printable ASCII characters.",
                       code="invalid_idempotency_key", param="Idempotency-Key")
    return key


async def earlier_response(store: Store, owner: str, key: str, request: dict[str, Any],
                           background: bool) -> ResponseRow | None:
    """The response ``owner`` already created with ``key`` (None if none); 409 if for another request."""
    row = await store.get_response_by_idempotency_key(owner, key)
    if row is None:
        return None
    if row.request != request or row.background != background:
        raise ApiError(409, f"Idempotency-Key {key!r} was already used for a different request (response "
                       f"{row.response_id}); send a new key for a new request.",
                       code="idempotency_key_reused", param="Idempotency-Key")
    return row
