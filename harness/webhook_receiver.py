"""A webhook receiver for the tests and the benchmark: a real HTTP server on 127.0.0.1 that
records every delivery (body and headers) and answers what ``answer(delivery)`` says (a
status code; it may also sleep or wait, as a slow receiver does)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: dict[str, str]  # names lowercased
    received_at: float

    @property
    def event(self) -> dict:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def response_id(self) -> str:
        return self.event["data"]["id"]


class WebhookReceiver:
    """``with WebhookReceiver(answer) as receiver:`` serves on ``receiver.url`` (``port`` 0: any free one)."""

    def __init__(self, answer: Callable[[Delivery], int] = lambda _delivery: 204, port: int = 0):
        self._answer = answer
        self._deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery = Delivery(body, {k.lower(): v for k, v in self.headers.items()}, time.time())
                with receiver._changed:
                    receiver._deliveries.append(delivery)
                    receiver._changed.notify_all()
                status = receiver._answer(delivery)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up waiting (a slow receiver's time-out)
                    pass

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def deliveries(self) -> list[Delivery]:
        with self._changed:
            return list(self._deliveries)

    def of(self, response_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.response_id == response_id]

    def wait_for(self, ready: Callable[[list[Delivery]], bool], timeout: float = 30.0) -> list[Delivery]:
        """Every delivery so far, once ``ready(deliveries)`` holds; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready(self._deliveries):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"receiver on {self.url}: still not there after {timeout}s, "
                                       f"{len(self._deliveries)} deliveries")
                self._changed.wait(left)
            return list(self._deliveries)
