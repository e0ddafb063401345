"""The SSE response class at its ASGI edge: what it sends, in what order, and when it stops.

Over real HTTP every stream of the suite goes through it (tests/test_protocol.py and the
client tests); here the ordering and the client leaving are checked exactly."""

from __future__ import annotations

import asyncio

import pytest

from agent_server.long_running.http.sse_response import EventStreamResponse, done_stream


class Client:
    """The ASGI side of one request: what the response sent, and a switch for leaving."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.left = asyncio.Event()

    async def receive(self) -> dict:
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


def run(coro):
    return asyncio.run(coro)


def test_every_chunk_then_the_end_of_the_body():
    async def chunks():
        for i in range(3):
            yield f"data: {i}\n\n"

    async def main():
        client = Client()
        await EventStreamResponse(chunks(), headers={"x-extra": "1"})({}, client.receive, client.send)
        return client

    client = run(main())
    start = client.sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"] == b"no-cache" and headers[b"x-extra"] == b"1"
    assert client.bodies() == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n", b""]
    assert client.sent[-1]["more_body"] is False


def test_a_ready_first_chunk_leaves_before_other_work_gets_the_loop():
    order: list[str] = []

    async def chunks():
        yield "data: created\n\n"
        order.append("second chunk made")
        yield "data: next\n\n"

    async def main():
        client = Client()

        async def send(message):
            if message["type"] == "http.response.body" and message["body"]:
                order.append(f"sent {message['body'].decode().strip()}")
            await client.send(message)

        async def other_work():  # the run the request started, scheduled before the response
            order.append("other work")

        asyncio.get_running_loop().create_task(other_work())
        await EventStreamResponse(chunks(), first_ready=True)({}, client.receive, send)

    run(main())
    assert order[0] == "sent data: created"
    assert order.index("other work") < order.index("sent data: next")


def test_the_client_leaving_ends_the_stream_and_closes_its_source():
    closed = asyncio.Event()

    async def main():
        client = Client()
        forever = asyncio.Event()

        async def chunks():
            try:
                yield "data: 0\n\n"
                await forever.wait()  # a quiet run: nothing more for now
                yield "data: never\n\n"
            finally:
                closed.set()

        async def leave_after_first_frame():
            while not client.bodies():
                await asyncio.sleep(0)
            client.left.set()

        leaving = asyncio.ensure_future(leave_after_first_frame())
        await asyncio.wait_for(EventStreamResponse(chunks(), first_ready=True)({}, client.receive, client.send), 5)
        await leaving
        return client

    client = run(main())
    assert closed.is_set()
    assert client.bodies() == [b"data: 0\n\n"]  # no end of body: the client is gone


def test_a_failing_source_raises_after_closing():
    async def chunks():
        yield "data: 0\n\n"
        raise RuntimeError("broken source")

    async def main():
        client = Client()
        await EventStreamResponse(chunks())({}, client.receive, client.send)

    with pytest.raises(RuntimeError, match="broken source"):
        run(main())


def test_cancelling_the_request_closes_the_source():
    closed = asyncio.Event()

    async def main():
        client = Client()

        async def chunks():
            try:
                yield "data: 0\n\n"
                await asyncio.Event().wait()
            finally:
                closed.set()

        request = asyncio.ensure_future(EventStreamResponse(chunks())({}, client.receive, client.send))
        while not client.bodies():
            await asyncio.sleep(0)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request

    run(main())
    assert closed.is_set()


def test_done_stream_is_done_alone():
    async def main():
        client = Client()
        await done_stream()({}, client.receive, client.send)
        return client

    assert run(main()).bodies() == [b"data: [DONE]\n\n", b""]
