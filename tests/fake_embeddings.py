"""A fake Databricks embedding endpoint on 127.0.0.1, for the real ``databricks-openai`` client.

It answers ``POST /serving-endpoints/embeddings`` in OpenAI's embeddings shape (what
Databricks serving endpoints answer there) with small deterministic vectors: one
dimension per concept below, whose words share it, plus a few hashed dimensions for
every other word. So "Which hue do I like best?" lands near "my favourite colour is
teal" although the two share no word, as a real embedding model would place them.
"""

from __future__ import annotations

import hashlib
import math
import re

from tests.support import FAKE_TOKEN as TOKEN
from tests.support import FakeWorkspaceServer

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


class FakeEmbeddingEndpoint(FakeWorkspaceServer):
    """``with FakeEmbeddingEndpoint() as fake:`` serves on ``fake.host``; ``fake.requests`` holds
    what it was sent; ``fake.failing = True`` makes it answer 503."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.failing = False
        super().__init__(self._answer)

    def _answer(self, method: str, path: str, _query, body: dict, authorization: str) -> tuple[int, dict]:
        self.requests.append({"method": method, "path": path, "body": body, "authorization": authorization})
        if method != "POST" or path != EMBEDDINGS_PATH:  # (the SDK's host-metadata probe, among others)
            return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": path}
        if authorization != f"Bearer {TOKEN}":
            return 401, {"error_code": "UNAUTHENTICATED", "message": "bad token"}
        if self.failing:
            return 503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "down"}
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return 200, {"object": "list", "model": body.get("model"),
                     "data": [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(texts)],
                     "usage": {"prompt_tokens": 1, "total_tokens": 1}}

    def embedding_requests(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST" and r["path"] == EMBEDDINGS_PATH]
