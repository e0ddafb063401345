"""The journal of one attempt's model calls: replaying what earlier attempts recorded, recording new ones.

Each finished model call is stored at its position in the run (0, 1, ...)
with a digest of its input. A resumed attempt asks the journal before each
call: while the call's position is recorded and its input digest matches,
the recorded result is replayed and the model is not called; at the first
call that is not recorded, or whose input differs (the agent's code or the
request changed, a tool that must always run returned something new), the
journal goes live for the rest of the attempt, logs why, and records each
call again. Records are bounded per response (``journal_max_bytes``): past
the bound a call is not recorded, nor any after it, and a later resume goes
live from there.

What a result is (JSON text) and how an input is digested is the SDK
adapter's business; the journal only keeps them in order.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..storage.models import RecordedModelCall

logger = logging.getLogger(__name__)

#: ``record(position, input_digest, result)``: stores one finished call durably.
Record = Callable[[int, str, str], Awaitable[None]]


def input_digest(value: Any) -> str:
    """A digest of a model call's input: canonical JSON (keys sorted), unknown objects by their JSON or text."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_fallback)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _json_fallback(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", exclude_unset=True) if callable(dump) else str(value)


@dataclass(frozen=True)
class ModelCallStep:
    """One model call of the attempt: its position, and the result to replay (None: call the model)."""

    position: int
    input_digest: str
    replay: str | None


class ModelCallJournal:
    """One attempt's view of its response's journal of model calls."""

    def __init__(self, response_id: str, attempt_number: int, prior: Sequence[RecordedModelCall],
                 record: Record, max_bytes: int):
        self.response_id = response_id
        self.attempt_number = attempt_number
        self._prior = {call.position: call for call in prior}
        self._record = record
        self._max_bytes = max_bytes
        self._next_position = 0
        self._live = False
        self._full = False
        # Bytes of the records this run keeps: the replayed ones, then the ones it records.
        self._kept_bytes = 0
        self.replayed = 0
        self.recorded = 0

    def next_call(self, digest: str) -> ModelCallStep:
        """The next model call, whose input has ``digest``: replayed if recorded with the same input."""
        position = self._next_position
        self._next_position += 1
        if not self._live:
            recorded = self._prior.get(position)
            if recorded is not None and recorded.input_digest == digest:
                self.replayed += 1
                self._kept_bytes += recorded.size
                return ModelCallStep(position, digest, recorded.result)
            self._go_live(position, recorded)
        return ModelCallStep(position, digest, None)

    def _go_live(self, position: int, recorded: RecordedModelCall | None) -> None:
        self._live = True
        if recorded is not None:
            logger.warning("%s attempt %d: model call %d's input differs from the one attempt %d recorded "
                           "(the agent, its tools' results or the request changed): calling the model "
                           "from here on, after %d replayed call(s)", self.response_id, self.attempt_number,
                           position, recorded.attempt_number, self.replayed)
        elif self._prior:
            logger.info("%s attempt %d: replayed %d recorded model call(s); calling the model from call %d on",
                        self.response_id, self.attempt_number, self.replayed, position)

    async def record(self, step: ModelCallStep, result: str) -> None:
        """Store a live call's result before the SDK acts on it (nothing past the bound)."""
        size = len(result.encode())
        if self._full or self._kept_bytes + size > self._max_bytes:
            if not self._full:
                logger.warning("%s: the journal of model calls reached journal_max_bytes (%d bytes); "
                               "model call %d and the ones after it are not recorded, so a resumed attempt "
                               "calls the model again from there", self.response_id, self._max_bytes,
                               step.position)
            self._full = True
            return
        await self._record(step.position, step.input_digest, result)
        self._kept_bytes += size
        self.recorded += 1
