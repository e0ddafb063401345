"""One send of one webhook event to one receiver: the body, the signed headers, the POST, and
what came of it (delivered, try again, or the receiver is gone)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from enum import Enum

import httpx

from ..storage.models import WebhookDelivery
from .settings import WebhookSettings
from .signing import signed_headers

#: What a receiver may answer that we read (to reuse its connection); past it, the connection closes.
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "long-running-agent-server-webhooks/1"


class Result(Enum):
    DELIVERED = "delivered"  # a 2xx
    RETRY = "retry"  # another status, a time-out, a refused or broken connection
    GONE = "gone"  # a 410: the receiver asks for no more deliveries


@dataclass(frozen=True)
class SendResult:
    result: Result
    detail: str  # "HTTP 200", "timed out after 15 s", "ConnectError: …"


def event_body(delivery: WebhookDelivery) -> bytes:
    """The event as OpenAI shapes a response's webhook event."""
    return json.dumps({"object": "event", "id": delivery.event_id, "type": delivery.type,
                       "created_at": delivery.created_at, "data": {"id": delivery.response_id}},
                      separators=(",", ":")).encode()


class WebhookSender:
    """Sends events over one connection pool, until :meth:`close`. Through httpx's transport,
    not its client: the client logs every request's full URL, and a receiver's URL may hold a
    token; this one follows no redirects either."""

    def __init__(self, settings: WebhookSettings, connections: int):
        self.settings = settings
        self._transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))

    async def send(self, delivery: WebhookDelivery) -> SendResult:
        body = event_body(delivery)
        timeout = self.settings.timeout_seconds
        # Signed at each attempt: receivers refuse a timestamp minutes old.
        headers = {"content-type": "application/json", "user-agent": USER_AGENT,
                   **signed_headers(self.settings.key, delivery.event_id, int(time.time()), body)}
        request = httpx.Request("POST", delivery.url, content=body, headers=headers,
                                extensions={"timeout": httpx.Timeout(timeout).as_dict()})
        try:
            # The whole send, however slowly a receiver drips its answer.
            async with asyncio.timeout(timeout):
                answer = await self._transport.handle_async_request(request)
                try:
                    status = answer.status_code
                    await _read_some(answer)
                finally:
                    await answer.aclose()
        except TimeoutError:
            return SendResult(Result.RETRY, f"timed out after {timeout:g} s")
        except httpx.HTTPError as exc:
            return SendResult(Result.RETRY, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if 200 <= status < 300:
            return SendResult(Result.DELIVERED, f"HTTP {status}")
        if status == 410:
            return SendResult(Result.GONE, "HTTP 410 Gone")
        return SendResult(Result.RETRY, f"HTTP {status}")

    async def close(self) -> None:
        await self._transport.aclose()


async def _read_some(answer: httpx.Response) -> None:
    """Read a short answer (so its connection is reused), stop reading a long one."""
    read = 0
    async for chunk in answer.aiter_raw():
        read += len(chunk)
        if read > MAX_ANSWER_BYTES:
            return
