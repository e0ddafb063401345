"""The evaluation dataset: one JSON object a line, checked before anything runs.

Each line: ``{"inputs": {"input": <text or Responses input items>},
"expectations": {"expected_facts": [...], "expected_tools": [...]}}``; both
expectation lists are optional.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_DATASET = Path(__file__).with_name("dataset.jsonl")


class DatasetError(ValueError):
    """The dataset file is missing or a line is malformed (the message says which)."""


def _check_row(row, where: str) -> dict:
    if not isinstance(row, dict) or not isinstance(row.get("inputs"), dict):
        raise DatasetError(f"{where}: expected an object with an \"inputs\" object")
    request_input = row["inputs"].get("input")
    if not (isinstance(request_input, str) and request_input.strip()) and not (
            isinstance(request_input, list) and request_input):
        raise DatasetError(f"{where}: inputs.input must be a non-empty string or list of input items")
    expectations = row.get("expectations", {})
    if not isinstance(expectations, dict):
        raise DatasetError(f"{where}: expectations must be an object")
    for key in ("expected_facts", "expected_tools"):
        value = expectations.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DatasetError(f"{where}: expectations.{key} must be a list of strings")
    return {"inputs": {"input": request_input}, "expectations": expectations}


def load_dataset(path: Path) -> list[dict]:
    """The rows of ``path`` in the shape ``mlflow.genai.evaluate`` takes."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise DatasetError(f"cannot read the dataset {path}: {error.strerror}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise DatasetError(f"{path}:{number}: not JSON ({error})") from None
        rows.append(_check_row(row, f"{path}:{number}"))
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows
