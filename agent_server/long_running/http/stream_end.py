"""How a live stream ends when its tail cannot go on: an ``error`` frame, then ``[DONE]``.

Never a bare cut: a client that sees the frame knows why the stream ended and
that it may reconnect with ``starting_after`` set to the last
``sequence_number`` it received. The frame has the shape of OpenAI's
``ResponseErrorEvent`` (``type``, ``code``, ``message``, ``param``) plus our
``response_id``; it carries no ``sequence_number`` because it is not an
event of the response's log (a resumed stream does not replay it).

Codes a client can act on:

- ``database_unavailable``: the database did not answer within the bound;
  reconnect in a few seconds.
- ``server_shutting_down``: this server is stopping; reconnect (another
  worker, or this one once restarted, serves the same stream).
- ``response_not_found``: the response was deleted; do not reconnect.
- ``server_error``: anything else (logged); reconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

from ..errors import ApiError, shutting_down
from ..events.tail import TailClosed

logger = logging.getLogger(__name__)

DONE = "data: [DONE]\n\n"


def error_frame(code: str, message: str, response_id: str) -> str:
    event = {"type": "error", "code": code, "message": message, "param": None, "response_id": response_id}
    return f"data: {json.dumps(event)}\n\n"


async def end_on_failure(frames: AsyncIterator[str], response_id: str) -> AsyncIterator[str]:
    """``frames``, then ``[DONE]``; if they fail, an error frame saying why before ``[DONE]``."""
    try:
        async with aclosing(frames) as chunks:
            async for chunk in chunks:
                yield chunk
    except TailClosed:
        error = shutting_down()
        yield error_frame(error.code, error.message, response_id)
    except ApiError as error:  # deleted (404), database unreachable (503)
        code = error.code or "server_error"
        message = f"Response {response_id} was deleted." if code == "response_not_found" else error.message
        yield error_frame(code, message, response_id)
    except Exception as exc:
        logger.exception("Stream of %s failed", response_id)
        yield error_frame("server_error", f"The stream failed ({type(exc).__name__}); reconnect with "
                          "starting_after to continue.", response_id)
    yield DONE


async def until_stopped(chunks: AsyncIterator[str], stopping: asyncio.Event) -> AsyncIterator[str]:
    """``chunks`` until ``stopping`` is set, then TailClosed (for streams no tail serves: an
    unstored run, which the server's shutdown would otherwise cut without a word)."""
    stop = asyncio.ensure_future(stopping.wait())
    try:
        while True:
            step = asyncio.ensure_future(anext(chunks))
            await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                await asyncio.wait({step})
                raise TailClosed()
            try:
                chunk = step.result()
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        stop.cancel()
        await chunks.aclose()
