"""AGENTS.md, CLAUDE.md and the skills in .claude/skills/ name only commands
and files that exist: every `uv run X` is a [project.scripts] entry or a tool
installed in the environment, and every repository path is there (or is one
the project creates locally and ignores in git)."""

from __future__ import annotations

import fnmatch
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from .support import PROJECT_ROOT

SKILLS_DIR = PROJECT_ROOT / ".claude/skills"
DOCS = [PROJECT_ROOT / "AGENTS.md", PROJECT_ROOT / "CLAUDE.md", *sorted(SKILLS_DIR.glob("*/SKILL.md"))]

_UV_RUN = re.compile(r"\buv run (?:--\S+ )*([A-Za-z0-9_.-]+)")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\]\(([^)#\s]+)\)")
# A repository path: words joined by slashes, or a file name with an extension.
_PATH = re.compile(r"^\.?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.*-]+)*/?$")
_FILE_EXTENSIONS = (".py", ".md", ".yml", ".yaml", ".toml", ".json", ".sql", ".example", ".lock")


def project_scripts() -> set[str]:
    return set(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def installed_tools() -> set[str]:
    """Executables of this environment (what `uv run` finds besides the scripts)."""
    bin_dir = Path(sys.executable).parent
    return {p.name for p in bin_dir.iterdir() if p.is_file()}


def git_ignored(path: str) -> bool:
    patterns = [line.strip().rstrip("/") for line in (PROJECT_ROOT / ".gitignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    first = path.strip("/").split("/")[0]
    return any(fnmatch.fnmatch(path.rstrip("/"), p) or fnmatch.fnmatch(first, p) for p in patterns)


def looks_like_path(token: str) -> bool:
    if not _PATH.match(token) or token.startswith(("http", "/")):
        return False
    return "/" in token or token.endswith(_FILE_EXTENSIONS)


def doc_references(text: str) -> tuple[set[str], set[str]]:
    """(`uv run` targets, repository paths) a document names."""
    commands = set(_UV_RUN.findall(text))
    paths = {t for t in _INLINE_CODE.findall(text) if looks_like_path(t)}
    paths |= {link for link in _LINK.findall(text) if not link.startswith("http")}
    return commands, paths


def missing_references(text: str) -> list[str]:
    commands, paths = doc_references(text)
    known = project_scripts() | installed_tools()
    problems = [f"uv run {c}: not a [project.scripts] entry or installed tool" for c in sorted(commands - known)]
    for path in sorted(paths):
        if not (PROJECT_ROOT / path).exists() and not git_ignored(path):
            problems.append(f"{path}: no such file or folder in the repository")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_commands_and_paths_exist(doc):
    assert missing_references(doc.read_text()) == []


def test_the_check_finds_what_is_missing():
    text = "Run `uv run start-server` or uv run no-such-tool; edit `agent_server/agents/nope.py`, see [x](docs/gone.md)."
    assert missing_references(text) == [
        "uv run no-such-tool: not a [project.scripts] entry or installed tool",
        "agent_server/agents/nope.py: no such file or folder in the repository",
        "docs/gone.md: no such file or folder in the repository",
    ]
    # Paths the project creates locally and git ignores are fine; other tokens are not paths.
    assert missing_references("`.env`, `.data/postgres`, `uv run pytest`, `projects/<p>/branches/<b>`") == []


def test_claude_md_points_to_agents_md():
    assert "AGENTS.md" in (PROJECT_ROOT / "CLAUDE.md").read_text()


def test_every_skill_has_frontmatter_and_is_listed():
    agents_md = (PROJECT_ROOT / "AGENTS.md").read_text()
    skills = sorted(SKILLS_DIR.glob("*/SKILL.md"))
    assert {p.parent.name for p in skills} >= {
        "run-locally", "modify-agent", "add-tools", "conversations-and-memory", "background-mode", "deploy",
        "troubleshoot",
    }
    for path in skills:
        text = path.read_text()
        assert text.startswith("---\n"), path
        front = yaml.safe_load(text.split("---\n", 2)[1])
        assert front["name"] == path.parent.name
        assert len(front["description"]) > 40
        assert f"`{path.parent.name}`" in agents_md, f"AGENTS.md does not list the {path.parent.name} skill"
