"""Standard Webhooks signatures (https://www.standardwebhooks.com), as OpenAI signs its webhooks.

A secret is ``whsec_`` and the base64 of its key. Each send carries ``webhook-id`` (the
event's id, the same on every attempt), ``webhook-timestamp`` (Unix seconds of this attempt:
receivers refuse old ones) and ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of
``"{id}.{timestamp}.{body}"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
#: Standard Webhooks asks for keys of 24 to 64 bytes; shorter ones are too easy to guess.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


def parse_secret(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret; ValueError saying what is wrong (never the secret)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"WEBHOOK_SECRET must start with {SECRET_PREFIX!r} followed by base64")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"WEBHOOK_SECRET must be {SECRET_PREFIX!r} followed by valid base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"WEBHOOK_SECRET's key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes once "
                         f"base64-decoded, got {len(key)}")
    return key


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of one send."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one send."""
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(key, webhook_id, timestamp, body)}
