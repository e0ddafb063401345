"""The SSE response every stream of this server is sent with.

Starlette's ``StreamingResponse`` runs each stream in an anyio task group (a
child task for the chunks, cancel scopes, a listener for the disconnect): on
the path of a streamed create, that machinery cost more CPU than sending the
frame, and the first frame went out only after the run the request had just
started took the event loop for its first steps. Here the first chunk, when
it is already at hand, is sent by the request's own task before it yields;
the rest is sent by one task while another waits for the client to leave,
and whichever ends first ends the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Send

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` of ``chunks``. ``first_ready``: the first chunk is produced without
    waiting (a stream that starts with the event its request just stored), so it is sent before
    anything else gets the event loop."""

    def __init__(self, chunks: AsyncIterator[str], *, headers: dict[str, str] | None = None,
                 first_ready: bool = False):
        super().__init__(chunks, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})
        self._first_ready = first_ready

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        chunks = self.body_iterator
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            if self._first_ready:
                first = await anext(chunks, None)
                if first is not None:
                    await send(_body(first))
            sending = asyncio.ensure_future(_send_all(chunks, send))
            leaving = asyncio.ensure_future(_until_disconnected(receive))
            try:
                await asyncio.wait((sending, leaving), return_when=asyncio.FIRST_COMPLETED)
            finally:
                # The client left (or this request is cancelled): the stream stops where it is.
                for task in (sending, leaving):
                    task.cancel()
                await asyncio.wait((sending, leaving))
            if not sending.cancelled() and sending.exception() is not None:
                raise sending.exception()
        finally:
            await chunks.aclose()  # the tail ends now, even if the sending task never started


async def _send_all(chunks: AsyncIterator[str], send: Send) -> None:
    async for chunk in chunks:
        await send(_body(chunk))
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _body(chunk: str) -> dict[str, Any]:
    return {"type": "http.response.body", "body": chunk.encode(), "more_body": True}


def done_stream() -> EventStreamResponse:
    """A stream with nothing more to send: ``[DONE]`` alone."""
    async def done() -> AsyncIterator[str]:
        yield "data: [DONE]\n\n"

    return EventStreamResponse(done(), first_ready=True)

