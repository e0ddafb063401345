"""Who is calling, and which of their headers may be stored.

On Databricks Apps the platform's proxy sets ``X-Forwarded-Email`` and
``X-Forwarded-User`` on every request; a response belongs to that identity.
Run locally, nothing sets them, so every caller is the same anonymous owner.
"""

from __future__ import annotations

from collections.abc import Mapping

ANONYMOUS = ""

# Only these are ever written to the database: identity and tracing headers.
# An allowlist, so a new credential-carrying header can never leak in.
STORABLE_HEADERS = frozenset(
    {
        "x-forwarded-email",
        "x-forwarded-user",
        "x-forwarded-preferred-username",
        "x-request-id",
        "user-agent",
    }
)


def owner_of(headers: Mapping[str, str]) -> str:
    """The caller's identity (``email:…`` or ``user:…``), or ``ANONYMOUS``.

    The prefix keeps the two namespaces apart: a user header whose value
    happens to equal someone's email address is not that person.
    """
    if email := headers.get("x-forwarded-email"):
        # Emails compare case-insensitively (migration 008 lowercased the owners stored before).
        return f"email:{email.lower()}"
    if user := headers.get("x-forwarded-user"):
        return f"user:{user}"
    return ANONYMOUS


def storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The subset of request headers that is safe to persist."""
    return {k.lower(): v for k, v in headers.items() if k.lower() in STORABLE_HEADERS}
