"""Statistics and SSE parsing the benchmark's figures share."""

from __future__ import annotations

import json
from typing import Any


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank on the sorted values)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 2), "p95_ms": round(pct(ms, 95), 2),
            "p99_ms": round(pct(ms, 99), 2), "max_ms": round(max(ms), 2) if ms else None}


def sse_frames(lines) -> list[dict]:
    """JSON frames of an SSE body, read to the end ([DONE] dropped)."""
    frames = []
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            frames.append(json.loads(line[6:]))
    return frames
