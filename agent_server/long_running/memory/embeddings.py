"""An embedding endpoint: texts in, vectors out, from a Databricks model serving endpoint.

Databricks serving endpoints answer OpenAI's embeddings API at
``<workspace>/serving-endpoints/embeddings`` (the endpoint's name is the
``model``). This calls it with ``databricks-openai``'s client, the one the
OpenAI agent variant uses for its chat model, so it authenticates the same way
(``DATABRICKS_HOST`` and a token, a profile, or the app's service principal).
The client is imported and built on first use: a server without an endpoint
never imports it, and start-up does not wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

#: At most this many texts go in one request (Databricks' embedding endpoints take up to 150 or more).
MAX_BATCH = 50


class EmbeddingFailed(Exception):
    """The endpoint did not answer with one vector per text."""


class EmbeddingEndpoint:
    def __init__(self, name: str, timeout_seconds: float = 10.0):
        self.name = name
        self._timeout = timeout_seconds
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order (batched by :data:`MAX_BATCH`)."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), MAX_BATCH):
            vectors += await self._embed_batch(list(texts[start:start + MAX_BATCH]))
        return vectors

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        client = await self._connected()
        # "float": the OpenAI client asks for base64 unless told, which not every endpoint serves.
        answer = await client.embeddings.create(model=self.name, input=texts, encoding_format="float")
        vectors = [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]
        if len(vectors) != len(texts) or any(not vector for vector in vectors):
            raise EmbeddingFailed(f"endpoint {self.name} answered {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    async def _connected(self) -> Any:
        async with self._lock:
            if self._client is None:
                # The Databricks SDK resolves its configuration synchronously (and may ask the host).
                self._client = await asyncio.to_thread(_make_client, self._timeout)
        return self._client


def _make_client(timeout_seconds: float) -> Any:
    from databricks_openai import AsyncDatabricksOpenAI

    # No retries: a memory left without an embedding is embedded on a later search, and a search
    # falls back to full text; a person or a tool waiting for a retry gains nothing.
    return AsyncDatabricksOpenAI(timeout=timeout_seconds, max_retries=0)
