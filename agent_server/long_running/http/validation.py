"""Validating what arrives over HTTP: the JSON body, flags, cursors, response ids.

Every check raises :class:`ApiError` with a message that says what would be
accepted; nothing here touches the database.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request

from ..ids import RESPONSE_ID
from ..errors import ApiError, not_found

MAX_SEQUENCE = 2**31 - 1


async def read_json_body(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, refused past ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Request body is {declared} bytes; the limit is {limit}.", code="body_too_large")
    body = bytearray()  # one buffer, not the chunks and then their join
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise ApiError(413, f"Request body exceeds the limit of {limit} bytes.", code="body_too_large")
        body += chunk
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}.", code="invalid_json") from None
    except RecursionError:
        # json.loads recurses once per nesting level: "[[[[…]]]]" would otherwise be a 500.
        raise ApiError(400, "Request body is nested too deeply to parse.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"Request body must be a JSON object, got {type(data).__name__}.", code="invalid_json")
    return data


def check_response_id(response_id: str) -> None:
    """An id this server cannot have made is unknown (404, as OpenAI answers), found without a look-up."""
    if not RESPONSE_ID.match(response_id):
        raise not_found(response_id[:80] + ("…" if len(response_id) > 80 else ""))


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



# ----- Responses request fields ------------------------------------------------

#: Passed to the handler as MLflow's request model has them; the bundled agents do not read them.
HANDLER_FIELDS = frozenset({"temperature", "top_p", "tools", "tool_choice", "max_output_tokens",
                            "parallel_tool_calls", "user", "truncation", "reasoning", "text"})
#: Every other field (``model``, ``include``, ``service_tier``, ...) is accepted, ignored and named in
#: the ``x-ignored-fields`` answer header. ``conversation``, ``previous_response_id`` and ``multitask_strategy`` are taken out by the server first.
MLFLOW_FIELDS = frozenset({"input", "custom_inputs", "context", "metadata", "store", "instructions"})

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


def check_metadata(metadata: Any) -> None:
    """OpenAI's limits: up to 16 string pairs, keys up to 64 characters, values up to 512."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise ApiError(400, f"'metadata' must be an object of string keys and values, got "
                       f"{type(metadata).__name__}.", code="invalid_metadata", param="metadata")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise ApiError(400, f"'metadata' has {len(metadata)} keys; at most {MAX_METADATA_PAIRS} are allowed.",
                       code="invalid_metadata", param="metadata")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise ApiError(400, f"metadata key '{key[:80]}' is {len(key)} characters long; at most "
                           f"{MAX_METADATA_KEY} are allowed.", code="invalid_metadata", param=f"metadata.{key[:80]}")
        if not isinstance(value, str):
            raise ApiError(400, f"metadata['{key}'] must be a string, got {type(value).__name__}.",
                           code="invalid_metadata", param=f"metadata.{key}")
        if len(value) > MAX_METADATA_VALUE:
            raise ApiError(400, f"metadata['{key}'] is {len(value)} characters long; at most "
                           f"{MAX_METADATA_VALUE} are allowed.", code="invalid_metadata", param=f"metadata.{key}")


def request_fields(data: dict[str, Any]) -> tuple[dict[str, Any], bool, list[str]]:
    """Sort a Responses request body's fields: ``(what the handler gets, store, ignored field names)``.

    ``instructions`` become a leading system message; a bare string ``input`` one user message.
    """
    check_metadata(data.get("metadata"))
    store = flag(data.get("store"), "store") if data.get("store") is not None else True
    if data.get("model") is not None and not isinstance(data["model"], str):
        raise ApiError(400, f"'model' must be a string, got {type(data['model']).__name__}.",
                       code="invalid_parameter", param="model")
    ignored = sorted(k for k in data if k not in MLFLOW_FIELDS and k not in HANDLER_FIELDS)
    handler_data = {k: v for k, v in data.items() if k in MLFLOW_FIELDS or k in HANDLER_FIELDS}
    handler_data.pop("store", None)
    if isinstance(handler_data.get("input"), str):
        handler_data["input"] = [{"role": "user", "content": handler_data["input"]}]
    instructions = handler_data.pop("instructions", None)
    if instructions is not None:
        if not isinstance(instructions, str):
            raise ApiError(400, f"'instructions' must be a string, got {type(instructions).__name__}.",
                           code="invalid_parameter", param="instructions")
        items = handler_data.get("input")
        handler_data["input"] = [{"role": "system", "content": instructions}, *(items if isinstance(items, list) else [])]
    return handler_data, store, ignored
