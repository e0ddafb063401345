"""The benchmark script still runs end to end (figures are printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from scripts.server_process import PROJECT_ROOT


def test_bench_quick_accept_and_first_event_run_and_report_the_floor(spawns):
    result = subprocess.run(
        [sys.executable, "-m", "bench.benchmark", "--quick", "--only", "accept,first_event"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report, _ = json.JSONDecoder().raw_decode(result.stdout)
    accept = report["figures"]["accept"]
    # Every sample of each pattern was answered with an id, on the engine and on the floor server.
    assert accept["n"] == accept["paced"]["n"] == 10
    assert accept["floor"]["back_to_back"]["n"] == accept["floor"]["paced"]["n"] == 10
    assert report["figures"]["first_event"]["broken_logs"] == 0
    assert "accept latency p50" in result.stdout
