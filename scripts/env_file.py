"""Update ``KEY=value`` lines of a ``.env`` file in place.

Comments, blank lines and keys we do not touch stay as they are; a key we set
replaces its first uncommented line, or is appended. Writing the same values
again leaves the text identical, which is what makes quickstart idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=(?P<value>.*)$")
# Values that dotenv reads back unchanged without quotes.
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+,=-]*$")


def format_value(value: str) -> str:
    if _PLAIN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_values(text: str) -> dict[str, str]:
    """The effective values (first assignment of each key wins, quotes removed)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match and match["key"] not in values:
            values[match["key"]] = _unquote(match["value"].strip())
    return values


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        inner = raw[1:-1]
        return inner.replace('\\"', '"').replace("\\\\", "\\") if raw[0] == '"' else inner
    # An unquoted value ends at an inline comment.
    return raw.split(" #", 1)[0].strip()


def update_text(text: str, updates: Mapping[str, str | None]) -> str:
    """``text`` with each key set to its value; ``None`` comments a key out."""
    lines = text.splitlines()
    done: set[str] = set()
    for i, line in enumerate(lines):
        match = _ASSIGNMENT.match(line)
        if not match or match["key"] not in updates or match["key"] in done:
            continue
        key = match["key"]
        value = updates[key]
        if value is None:
            lines[i] = f"# {line}" if _unquote(match["value"].strip()) else line
        elif _unquote(match["value"].strip()) != value:
            lines[i] = f"{key}={format_value(value)}"
        done.add(key)
    missing = [k for k, v in updates.items() if k not in done and v is not None]
    if missing:
        if lines and lines[-1].strip():
            lines.append("")
        if not any(line.startswith("# Written by quickstart") for line in lines):
            lines.append("# Written by quickstart")
        lines.extend(f"{key}={format_value(updates[key])}" for key in missing)
    return "\n".join(lines) + "\n" if lines else ""


def update_file(path: Path, updates: Mapping[str, str | None], template: Path | None = None) -> bool:
    """Apply ``updates`` to ``path`` (created from ``template`` if missing); True if it changed."""
    if path.exists():
        before = path.read_text()
    elif template is not None and template.exists():
        before = template.read_text()
    else:
        before = ""
    after = update_text(before, updates)
    if path.exists() and after == before:
        return False
    path.write_text(after)
    return True
