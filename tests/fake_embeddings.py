"""A fake Databricks embedding endpoint on 127.0.0.1, for the real ``databricks-openai`` client.

It answers ``POST /serving-endpoints/embeddings`` in OpenAI's embeddings shape (what
Databricks serving endpoints answer there) with small deterministic vectors: one
dimension per concept below, whose words share it, plus a few hashed dimensions for
every other word. So "Which hue do I like best?" lands near "my favourite colour is
teal" although the two share no word, as a real embedding model would place them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support import FAKE_TOKEN as TOKEN

EMBEDDINGS_PATH = "/serving-endpoints/embeddings"

CONCEPTS = [
    {"colour", "color", "colours", "colors", "hue", "hues", "shade", "tint"},
    {"favourite", "favorite", "like", "love", "prefer", "best"},
    {"teal", "turquoise", "cyan", "aqua"},
    {"food", "eat", "dish", "meal", "cuisine", "pizza", "pasta"},
    {"dog", "puppy", "pet", "cat", "kitten"},
    {"live", "home", "city", "town", "reside"},
    {"work", "job", "employer", "company", "office"},
    {"birthday", "born", "birth"},
]
_HASHED = 8
_STOP = {"a", "an", "and", "are", "do", "i", "is", "it", "me", "my", "of", "the", "to", "what", "which", "you"}


def embed(text: str) -> list[float]:
    vector = [0.0] * (len(CONCEPTS) + _HASHED)
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in _STOP:
            continue
        concept = next((n for n, words in enumerate(CONCEPTS) if word in words), None)
        if concept is None:
            concept = len(CONCEPTS) + int(hashlib.sha256(word.encode()).hexdigest(), 16) % _HASHED
        vector[concept] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class FakeEmbeddingEndpoint:
    """``with FakeEmbeddingEndpoint() as fake:`` serves on ``fake.host``; ``fake.requests`` holds
    what it was sent; ``fake.failing = True`` makes it answer 503."""

    def __init__(self) -> None:
        fake = self
        self.requests: list[dict] = []
        self.failing = False

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):  # the Databricks SDK's host-metadata probe
                self.send_error(404)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append({"path": self.path, "body": body,
                                      "authorization": self.headers.get("Authorization")})
                if self.path != EMBEDDINGS_PATH:
                    return self._json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": self.path})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._json(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"})
                if fake.failing:
                    return self._json(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "down"})
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                self._json(200, {"object": "list", "model": body.get("model"),
                                 "data": [{"object": "embedding", "index": i, "embedding": embed(t)}
                                          for i, t in enumerate(texts)],
                                 "usage": {"prompt_tokens": 1, "total_tokens": 1}})

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"

    def embedding_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"] == EMBEDDINGS_PATH]

    def __enter__(self) -> "FakeEmbeddingEndpoint":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
