"""Refuse ambiguous or oversized request headers before any route sees them.

- More than one ``X-Forwarded-Email`` (or ``X-Forwarded-User``): 400. The
  platform's proxy sets exactly one; two mean a proxy appended to a value the
  client sent, and picking either could make a caller someone else.
- All headers together over ``MAX_HEADER_BYTES``, or a header the server
  stores (identity, tracing, user agent) over ``MAX_STORED_HEADER_BYTES``:
  431, so nothing that large is ever stored.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import error_response
from .identity import STORABLE_HEADERS

MAX_HEADER_BYTES = 64 * 1024
MAX_STORED_HEADER_BYTES = 1024
_SINGLE = (b"x-forwarded-email", b"x-forwarded-user")
_STORED = frozenset(name.encode() for name in STORABLE_HEADERS)


def header_problem(headers: list[tuple[bytes, bytes]]) -> tuple[int, str, str, str] | None:
    """(status, message, code, param) for headers that must be refused, or None."""
    total = sum(len(name) + len(value) + 4 for name, value in headers)
    if total > MAX_HEADER_BYTES:
        return (431, f"Request headers are {total} bytes; the limit is {MAX_HEADER_BYTES}.",
                "headers_too_large", None)
    for name, value in headers:
        if name in _STORED and len(value) > MAX_STORED_HEADER_BYTES:
            header = name.decode()
            return (431, f"Header {header} is {len(value)} bytes; the limit is {MAX_STORED_HEADER_BYTES}.",
                    "headers_too_large", header)
    for single in _SINGLE:
        if sum(1 for name, _ in headers if name == single) > 1:
            header = single.decode()
            return (400, f"Request has more than one {header} header; send exactly one.",
                    "duplicate_identity_header", header)
    return None


class HeaderChecks:
    """ASGI middleware applying :func:`header_problem` to every HTTP request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (problem := header_problem(scope["headers"])) is not None:
            await error_response(*problem)(scope, receive, send)
            return
        await self.app(scope, receive, send)
