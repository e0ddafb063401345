"""The plan in docs/architecture.md matches the tree: every module is named there, and the
engine's imports only go down its layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "docs" / "architecture.md"
ENGINE = "agent_server.long_running"

# Top to bottom, as docs/architecture.md states it. A module may import its own
# sub-package and anything below it; the leaves (settings, errors, ids) import no engine module.
LAYERS = ["server", "http", "process", "runs", "conversations", "memory", "events", "tools", "journal",
          "webhooks", "storage"]
LEAVES = {"settings", "errors", "ids", "context"}


def _modules() -> list[Path]:
    return sorted(p for p in (ROOT / "agent_server").rglob("*.py") if p.name != "__init__.py")


def _engine_imports(path: Path) -> set[str]:
    """The engine modules ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            found.update(n for n in [target, *names] if n.startswith(ENGINE + "."))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(ENGINE + "."))
    return found


def _layer(module: str) -> str:
    return module[len(ENGINE) + 1:].split(".")[0]


# The plan names a module by its path below one of these (its section says which).
BASES = [ROOT / "agent_server" / "long_running", ROOT / "agent_server" / "agents", ROOT / "agent_server"]


def _names_of(path: Path) -> set[str]:
    return {path.relative_to(base).as_posix() for base in BASES if path.is_relative_to(base)}


def test_every_module_is_named_in_the_plan():
    named = set(re.findall(r"`([\w/]+\.py)`", PLAN.read_text()))
    missing = [str(p.relative_to(ROOT)) for p in _modules() if not _names_of(p) & named]
    assert not missing, f"modules docs/architecture.md does not name: {missing}"


def test_the_plan_names_no_module_that_is_gone():
    named = set(re.findall(r"`([\w/]+\.py)`", PLAN.read_text()))
    existing = set().union(*(_names_of(p) for p in ROOT.joinpath("agent_server").rglob("*.py")))
    named = {name for name in named if not name.startswith("tests/")}
    assert not named - existing, f"the plan names missing files: {sorted(named - existing)}"


def test_the_plan_states_the_layer_order_the_tests_check():
    assert " → ".join(LAYERS) in PLAN.read_text()


def test_engine_imports_only_go_down():
    upward = []
    for path in (ROOT / "agent_server" / "long_running").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module.endswith("__init__"):
            continue
        own = _layer(module)
        for target in _engine_imports(path):
            theirs = _layer(target)
            if theirs == own or theirs in LEAVES or theirs == "__init__":
                continue
            if own in LEAVES:
                upward.append(f"{module} (a leaf) imports {target}")
            elif theirs not in LAYERS:
                continue  # a name imported from a package's __init__, not a module
            elif LAYERS.index(theirs) < LAYERS.index(own):
                upward.append(f"{module} imports {target}, a layer above it")
    assert not upward, "\n".join(sorted(upward))
