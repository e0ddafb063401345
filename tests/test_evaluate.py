"""``uv run agent-evaluate`` on the offline model: the printed table, the exit
code, a failing scorer, and a malformed dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent_server.evaluation.dataset import DEFAULT_DATASET, load_dataset
from tests.support import PROJECT_ROOT

AGENT_EVALUATE = str(Path(sys.executable).parent / "agent-evaluate")  # the [project.scripts] entry


def run_evaluate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGENT_SERVER_ENV_FILE": "", "LLM_ENDPOINT_NAME": "", "MLFLOW_EXPERIMENT_ID": "",
           "EVAL_JUDGE_MODEL": "", "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0", "MCP_SERVERS": "",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    return subprocess.run([AGENT_EVALUATE, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_shipped_dataset_is_valid():
    rows = load_dataset(DEFAULT_DATASET)
    assert len(rows) >= 3 and all(row["expectations"] for row in rows)


def test_evaluation_prints_each_assessment_and_fails_on_a_failing_scorer(tmp_path, spawns):
    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text("\n".join(json.dumps(row) for row in [
        {"inputs": {"input": "What time is it?"},
         "expectations": {"expected_facts": ["current time"], "expected_tools": ["get_current_time"]}},
        # The offline model says neither, and calls no tool for a greeting.
        {"inputs": {"input": "hello"}, "expectations": {"expected_facts": ["banana"], "expected_tools": ["research"]}},
    ]) + "\n")
    result = run_evaluate(tmp_path, "--dataset", str(dataset))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    results = {(line[0], scorer): line[line.index(scorer) + 1] for line in lines if line and line[0].isdigit()
               for scorer in ("expected_facts_present", "expected_tools_called") if scorer in line}
    assert results == {
        ("1", "expected_facts_present"): "pass", ("1", "expected_tools_called"): "pass",
        ("2", "expected_facts_present"): "fail", ("2", "expected_tools_called"): "fail",
    }, result.stdout
    assert "missing from the answer: 'banana'" in result.stdout
    assert "not called: research; called: none" in result.stdout
    assert "2 of 4 assessments passed" in result.stdout
    assert "Judges: none (offline model" in result.stdout


def test_malformed_dataset_is_refused_before_anything_runs(tmp_path, spawns):
    dataset = tmp_path / "bad.jsonl"
    dataset.write_text('{"inputs": {"input": "hi"}}\n{"inputs": {"input": ""}}\n')
    result = run_evaluate(tmp_path, "--dataset", str(dataset))
    assert result.returncode == 2
    assert f"{dataset}:2: inputs.input must be a non-empty string" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()
