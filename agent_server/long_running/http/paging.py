"""``limit``, ``after`` and ``order``: the one parser of every list endpoint's page parameters.

Lists answer in OpenAI's shape (``{"object": "list", "data", "first_id",
"last_id", "has_more"}``). What ``after`` names differs per list (a response
id, an item id), so each endpoint checks it against its own rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ApiError

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
ORDERS = ("asc", "desc")


@dataclass(frozen=True)
class Page:
    limit: int
    after: str | None
    descending: bool  # OpenAI's default: newest first


def page_of(params: Mapping[str, str], *, ordered: bool = True) -> Page:
    """The page the query parameters ask for (``ordered``: the list takes ``order``)."""
    return Page(limit=_limit(params.get("limit")), after=params.get("after"),
                descending=_order(params.get("order")) == "desc" if ordered else True)


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, got {value[:40]!r}.",
                       code="invalid_parameter", param="limit")
    return int(value)


def _order(value: str | None) -> str:
    order = value or "desc"
    if order not in ORDERS:
        raise ApiError(400, f"order must be 'asc' or 'desc', got {order[:40]!r}.", code="invalid_parameter",
                       param="order")
    return order
