"""The repository itself: no file a user reads or runs carries an unresolved merge."""

from __future__ import annotations

import re
import subprocess

from tests.support import PROJECT_ROOT

_MARKER = re.compile(r"^(<{7} |>{7} |={7}$)", re.MULTILINE)


def test_no_tracked_file_has_merge_conflict_markers():
    files = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    conflicted = []
    for name in files:
        path = PROJECT_ROOT / name
        if name.endswith((".lock", ".png", ".json")) or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if _MARKER.search(text):
            conflicted.append(name)
    assert conflicted == []
