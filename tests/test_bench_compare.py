"""The benchmark comparison names every figure that got more than 15 % worse, and only those."""

from __future__ import annotations

import json
import subprocess
import sys

from bench import compare
from scripts.server_process import PROJECT_ROOT


def _report(**figures) -> dict:
    return {"figures": figures}


def test_a_figure_worse_by_more_than_15_percent_is_named_with_its_direction():
    recorded = _report(accept={"p50_ms": 2.0}, throughput={"events_per_second": 30000})
    current = _report(accept={"p50_ms": 2.6}, throughput={"events_per_second": 24000})
    worse = compare.regressions(recorded["figures"], current["figures"])
    assert worse == ["accept.p50_ms: 2 -> 2.6 (+30% worse)",
                     "throughput.events_per_second: 30000 -> 24000 (+20% worse)"]


def test_better_figures_small_changes_and_changes_inside_the_noise_floor_are_not_named():
    recorded = _report(accept={"p50_ms": 2.0}, throughput={"events_per_second": 30000},
                       restart={"p50_seconds": 0.01}, live={"p50_ms": 1.0})
    current = _report(accept={"p50_ms": 2.2}, throughput={"events_per_second": 45000},
                      restart={"p50_seconds": 0.02}, live={"p50_ms": 0.5})
    assert compare.regressions(recorded["figures"], current["figures"]) == []


def test_figures_missing_from_either_report_are_skipped():
    assert compare.regressions({"accept": {"p50_ms": 2.0}}, {"live": {"p50_ms": 9.0}}) == []


def test_the_command_compares_two_saved_reports_and_exits_3_on_a_regression(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_report(first_event={"p50_ms": 2.0})) + "\ntable text after the JSON\n")
    new.write_text(json.dumps(_report(first_event={"p50_ms": 4.0})))
    run = subprocess.run([sys.executable, "-m", "bench.compare", str(old), str(new)], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 3, run.stderr
    assert "first_event.p50_ms: 2 -> 4 (+100% worse)" in run.stdout
    same = subprocess.run([sys.executable, "-m", "bench.compare", str(old), str(old)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert same.returncode == 0 and "No compared figure" in same.stdout


def test_the_recorded_figures_hold_every_compared_figure():
    recorded = compare.load_report(compare.RECORDED)["figures"]
    missing = [f.path for f in compare.COMPARED if compare.value_at(recorded, f.path) is None]
    assert not missing, f"bench/recorded.json lacks {missing}: record a full `uv run bench --record`"
