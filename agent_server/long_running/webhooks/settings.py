"""Webhook settings, read from the server's environment only (never from a request, so a
caller cannot make the server call an address of its choosing), each checked once.

``WEBHOOK_URL`` (one or more, comma-separated), ``WEBHOOK_SECRET`` (``whsec_<base64>``),
``WEBHOOK_EVENTS`` (which event types; default all), ``WEBHOOK_RETRY_HOURS`` (how long a
delivery is retried), ``WEBHOOK_TIMEOUT_SECONDS`` (one send), ``WEBHOOK_FIRST_RETRY_SECONDS``
(the first back-off). A malformed value raises ValueError naming the variable. Without a
URL or a secret, webhooks are off and :attr:`WebhookSettings.off_reason` says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .signing import parse_secret

#: The events a background response sends when it ends, as OpenAI names them.
EVENT_TYPES = ("response.completed", "response.failed", "response.cancelled", "response.incomplete")
NOT_SET = "WEBHOOK_URL and WEBHOOK_SECRET are not set"


@dataclass(frozen=True)
class WebhookSettings:
    urls: tuple[str, ...] = ()
    key: bytes = field(default=b"", repr=False)  # the secret's decoded key
    event_types: tuple[str, ...] = EVENT_TYPES
    retry_hours: float = 72.0
    timeout_seconds: float = 15.0
    first_retry_seconds: float = 5.0
    off_reason: str = ""  # why webhooks are off ("" when on)

    @property
    def enabled(self) -> bool:
        return bool(self.urls and self.key)

    @property
    def half_set(self) -> bool:
        """Off because only one of the URL and the secret is set (a mistake worth a warning)."""
        return bool(self.off_reason) and self.off_reason != NOT_SET

    @property
    def retry_horizon_seconds(self) -> float:
        return self.retry_hours * 3600.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "WebhookSettings":
        def text(name: str) -> str:
            return (environ.get(name) or "").strip()

        urls = parse_urls(text("WEBHOOK_URL"))
        secret = text("WEBHOOK_SECRET")
        key = parse_secret(secret) if secret else b""
        def number(name: str, default: float) -> float:
            return _positive(name, text(name), default)

        numbers = {"retry_hours": number("WEBHOOK_RETRY_HOURS", 72.0),
                   "timeout_seconds": number("WEBHOOK_TIMEOUT_SECONDS", 15.0),
                   "first_retry_seconds": number("WEBHOOK_FIRST_RETRY_SECONDS", 5.0)}
        event_types = parse_event_types(text("WEBHOOK_EVENTS"))
        if not urls and not key:
            off = NOT_SET
        elif not key:
            off = "WEBHOOK_URL is set but WEBHOOK_SECRET is not: no webhook is sent unsigned"
        elif not urls:
            off = "WEBHOOK_SECRET is set but WEBHOOK_URL is not"
        else:
            off = ""
        if off:
            urls, key = (), b""
        return cls(urls=urls, key=key, event_types=event_types, off_reason=off, **numbers)


def parse_urls(raw: str) -> tuple[str, ...]:
    """``WEBHOOK_URL``'s http(s) URLs, in order, each once."""
    urls: list[str] = []
    for n, entry in enumerate((e.strip() for e in raw.split(",")), start=1):
        if not entry:
            continue
        try:
            parts = urlsplit(entry)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            parts, port_ok = None, False
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok \
                or parts.fragment or any(c.isspace() for c in entry):
            raise ValueError(f"WEBHOOK_URL entry {n} ({describe_url(entry)}) is not an http:// or https:// URL "
                             "with a host (several URLs are separated by commas)")
        if entry not in urls:
            urls.append(entry)
    return tuple(urls)


def parse_event_types(raw: str) -> tuple[str, ...]:
    """``WEBHOOK_EVENTS``: a comma-separated subset of :data:`EVENT_TYPES`; empty means all."""
    chosen = [e.strip() for e in raw.split(",") if e.strip()]
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"WEBHOOK_EVENTS has unknown event type(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(EVENT_TYPES)}")
    return tuple(e for e in EVENT_TYPES if e in chosen) if chosen else EVENT_TYPES


def describe_url(url: str) -> str:
    """A URL as logs may show it: scheme, host and path; no user info or query (they may hold tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an unparseable URL"
    if not parts.scheme:
        return "a URL without a scheme"
    return f"{parts.scheme}://{host}{port}{parts.path}{'?…' if parts.query else ''}"


def _positive(variable: str, raw: str, default: float) -> float:
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{variable} must be a positive number, got {raw!r}")
    return value
