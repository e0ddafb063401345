"""Validating what arrives over HTTP: the JSON body, flags, cursors, response ids.

Every check raises :class:`ApiError` with a message that says what would be
accepted; nothing here touches the database.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request

from .errors import ApiError

RESPONSE_ID = re.compile(r"^resp_[0-9a-f]{32}$")
MAX_SEQUENCE = 2**31 - 1


async def read_json_body(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, refused past ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Request body is {declared} bytes; the limit is {limit}.", code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"Request body exceeds the limit of {limit} bytes.", code="body_too_large")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}.", code="invalid_json") from None
    except RecursionError:
        # json.loads recurses once per nesting level: "[[[[…]]]]" would otherwise be a 500.
        raise ApiError(400, "Request body is nested too deeply to parse.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"Request body must be a JSON object, got {type(data).__name__}.", code="invalid_json")
    return data


def check_response_id(response_id: str) -> None:
    if not RESPONSE_ID.match(response_id):
        raise ApiError(400, f"Invalid response id '{response_id[:80]}': expected 'resp_' followed by "
                       "32 lowercase hex digits.", code="invalid_response_id", param="response_id")


def _reject_constant(name: str) -> float:
    """NaN and Infinity are not JSON (RFC 8259), and Postgres jsonb cannot store them."""
    raise ValueError(f"{name} is not a valid JSON value")


def check_storable(value: Any) -> None:
    """Reject strings Postgres cannot store in jsonb (NUL characters, unpaired surrogates) with a 400,
    instead of a database error after the request was accepted."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise ApiError(400, "Request body contains a NUL character (\\u0000), which cannot be stored.",
                               code="invalid_request")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(400, "Request body contains an unpaired UTF-16 surrogate (e.g. \\ud800), "
                               "which is not valid Unicode.", code="invalid_request") from None


def flag(value: Any, name: str) -> bool:
    """A boolean body field or query parameter; None means false."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ApiError(400, f"'{name}' must be a boolean (true or false), got {str(value)[:40]!r}.",
                   code="invalid_parameter", param=name)


def cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > MAX_SEQUENCE:
        raise ApiError(400, f"starting_after must be a whole number from 0 to {MAX_SEQUENCE}, "
                       f"got {value[:40]!r}.", code="invalid_parameter", param="starting_after")
    return int(value)

