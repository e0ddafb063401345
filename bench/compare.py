"""Compare a benchmark run with the recorded figures and name every figure that got worse.

``uv run bench --compare`` runs the benchmark, then compares its figures with
``bench/recorded.json`` (``uv run bench --record`` writes that file from a run);
``python -m bench.compare OLD.json NEW.json`` compares two saved reports (the JSON
``uv run bench`` prints). A figure counts as worse when it moved the wrong way by
more than 15 % *and* by more than its noise floor (a 0.01 s restart that takes
0.02 s is not a regression anyone can see). Exit status 3 when any did.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).resolve().parent / "recorded.json"
TOLERANCE = 0.15


@dataclass(frozen=True)
class Compared:
    path: str  # dotted path in the report's "figures"
    higher_is_better: bool
    noise: float  # differences smaller than this never count


COMPARED = (
    Compared("accept.p50_ms", False, 0.3),
    Compared("accept.server_cpu_ms_per_request", False, 0.2),
    Compared("burst.p50_ms", False, 5.0),
    Compared("burst.server_cpu_ms_per_request", False, 0.2),
    Compared("first_event.p50_ms", False, 0.3),
    Compared("live.p50_ms", False, 0.3),
    Compared("live.p95_ms", False, 0.5),
    Compared("throughput.events_per_second", True, 500),
    Compared("throughput.server_cpu_ms_per_1000_events", False, 1.0),
    Compared("scale.accept_under_load.p50_ms", False, 1.0),
    Compared("scale.server_cpu_ms_per_1000_events", False, 2.0),
    Compared("scale.peak_server_rss_mib", False, 20),
    Compared("across_workers.p50_ms", False, 0.3),
    Compared("resume.p50_seconds", False, 0.1),
    Compared("restart.p50_seconds", False, 0.1),
    Compared("start.start_server.p50_seconds", False, 0.2),
    Compared("conversation.turn_1000.accept.p50_ms", False, 0.5),
    Compared("conversation.turn_1000.first_delta.p50_ms", False, 0.5),
    Compared("large_input.four_runs_mib_per_input_mb", False, 0.3),
    Compared("slow_readers.rss_growth_per_unread_mib", False, 0.2),
    # Side by side with the reference server: our own figures, and how far ahead of it we are.
    Compared("reference.ours.throughput_server_cpu_seconds", False, 0.05),
    Compared("reference.ours.restart_p50_seconds", False, 0.3),
    Compared("reference.start_server.restart_p50_seconds", False, 0.3),
    Compared("reference.ratios.accept", True, 0.2),
    Compared("reference.ratios.first_frame", True, 0.5),
    Compared("reference.ratios.throughput", True, 2.0),
)


def value_at(figures: dict[str, Any], path: str) -> float | None:
    node: Any = figures
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def regressions(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """One line per figure both reports have that got worse beyond the tolerance."""
    worse = []
    for figure in COMPARED:
        before, after = value_at(recorded, figure.path), value_at(current, figure.path)
        if before is None or after is None or before == 0:
            continue
        change = (after - before) / abs(before)
        if figure.higher_is_better:
            change = -change
        if change > TOLERANCE and abs(after - before) > figure.noise:
            worse.append(f"{figure.path}: {before:g} -> {after:g} ({change:+.0%} worse)")
    return worse


def report_lines(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Every compared figure both reports have, side by side."""
    lines = []
    for figure in COMPARED:
        before, after = value_at(recorded, figure.path), value_at(current, figure.path)
        if before is not None and after is not None:
            lines.append(f"{figure.path:45s} {before:>12g} {after:>12g}")
    return lines


def compare(recorded_report: dict[str, Any], current_report: dict[str, Any], out=sys.stdout) -> int:
    """Print the comparison; 3 if any figure got worse, else 0."""
    recorded, current = recorded_report["figures"], current_report["figures"]
    print(f"{'figure':45s} {'recorded':>12s} {'this run':>12s}", file=out)
    for line in report_lines(recorded, current):
        print(line, file=out)
    worse = regressions(recorded, current)
    if worse:
        print(f"\n{len(worse)} figure(s) more than {TOLERANCE:.0%} worse than recorded:", file=out)
        for line in worse:
            print(f"  {line}", file=out)
        return 3
    print(f"\nNo compared figure is more than {TOLERANCE:.0%} worse than recorded.", file=out)
    return 0


def load_report(path: Path) -> dict[str, Any]:
    """A saved report: the JSON object ``uv run bench`` prints (anything after it is ignored)."""
    text = path.read_text()
    report, _ = json.JSONDecoder().raw_decode(text[text.index("{"):])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare two benchmark reports (saved `uv run bench` output).")
    parser.add_argument("recorded", type=Path)
    parser.add_argument("current", type=Path)
    args = parser.parse_args(argv)
    return compare(load_report(args.recorded), load_report(args.current))


if __name__ == "__main__":
    sys.exit(main())
