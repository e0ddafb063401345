"""The side-by-side benchmark's check of a streamed log (bench/side_by_side.py)."""

from __future__ import annotations

from bench.side_by_side import _problem


def _deltas(n: int, start: int = 0) -> list[dict]:
    return [{"type": "response.output_text.delta", "delta": f"delta-{i} ", "sequence_number": start + i}
            for i in range(n)]


def test_every_delta_once_and_in_order_is_intact():
    assert _problem([{"type": "response.created", "sequence_number": 0}, *_deltas(3, start=1)], 3) is None


def test_a_repeated_event_is_named():
    frames = [{"type": "response.created", "sequence_number": 0}, {"type": "x", "sequence_number": 0},
              *_deltas(3, start=1)]
    assert _problem(frames, 3) == "sequence numbers not increasing"


def test_a_missing_or_reordered_delta_is_named():
    assert _problem(_deltas(2), 3) == "2 deltas read back, expected 3 in order"
    swapped = _deltas(3)
    swapped[0]["delta"], swapped[1]["delta"] = swapped[1]["delta"], swapped[0]["delta"]
    assert _problem(swapped, 3) == "3 deltas read back, expected 3 in order"
