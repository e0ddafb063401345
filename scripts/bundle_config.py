"""Write quickstart's choices into databricks.yml without losing its comments.

The file is edited as text, not re-dumped from YAML, so everything a user
wrote by hand survives. Quickstart touches only:

- the ``default:`` of the ``experiment_id`` variable, and
- the blocks between ``# >>> lakebase <kind>`` and ``# <<< lakebase <kind>``
  marker comments (variables, each app's env entry, each app's resource),
  which it renders for the chosen Lakebase flavour.

Rendering the same choices twice gives the same text, so a second run
changes nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

PROVISIONED_DATABASE = "databricks_postgres"


class BundleEditError(RuntimeError):
    """databricks.yml does not have the shape quickstart edits; the message says what is missing."""


@dataclass(frozen=True)
class LakebaseChoice:
    """Which Lakebase the apps use: autoscaling (branch + database paths) or provisioned."""

    branch: str | None = None  # projects/<p>/branches/<b>
    database: str | None = None  # projects/<p>/branches/<b>/databases/<d>
    instance_name: str | None = None  # provisioned

    @property
    def provisioned(self) -> bool:
        return self.instance_name is not None


def _scalar(value: str) -> str:
    # JSON strings are valid YAML double-quoted scalars: safe for any value.
    return json.dumps(value)


def render_block(kind: str, choice: LakebaseChoice) -> list[str]:
    """Lines of one marker block, indented relative to the marker (no indent)."""
    if kind == "variables":
        if choice.provisioned:
            lines = ["lakebase_instance_name:", '  description: "Lakebase Provisioned instance name"']
            lines.append(f"  default: {_scalar(choice.instance_name)}")
            return lines
        lines = [
            "lakebase_branch:",
            '  description: "Lakebase Autoscaling branch: projects/<project>/branches/<branch>"',
        ]
        if choice.branch:
            lines.append(f"  default: {_scalar(choice.branch)}")
        lines += [
            "lakebase_database:",
            '  description: "Lakebase Autoscaling database: projects/<project>/branches/<branch>/databases/<database>"',
        ]
        if choice.database:
            lines.append(f"  default: {_scalar(choice.database)}")
        return lines
    if kind == "env":
        if choice.provisioned:
            return ["- name: LAKEBASE_INSTANCE_NAME", "  value: ${var.lakebase_instance_name}"]
        return ["- name: LAKEBASE_AUTOSCALING_ENDPOINT", "  value_from: postgres"]
    if kind == "resource":
        if choice.provisioned:
            return [
                "- name: database",
                "  database:",
                "    instance_name: ${var.lakebase_instance_name}",
                f"    database_name: {PROVISIONED_DATABASE}",
                "    permission: CAN_CONNECT_AND_CREATE",
            ]
        return [
            "- name: postgres",
            "  postgres:",
            "    branch: ${var.lakebase_branch}",
            "    database: ${var.lakebase_database}",
            "    permission: CAN_CONNECT_AND_CREATE",
        ]
    raise ValueError(f"unknown lakebase block kind {kind!r}")


_BEGIN = re.compile(r"^(?P<indent> *)# >>> lakebase (?P<kind>\w+)\b.*$")


def replace_lakebase_blocks(text: str, choice: LakebaseChoice) -> str:
    """Re-render every lakebase marker block for ``choice``."""
    lines = text.splitlines(keepends=False)
    out: list[str] = []
    i = 0
    seen: dict[str, int] = {}
    while i < len(lines):
        begin = _BEGIN.match(lines[i])
        if not begin:
            out.append(lines[i])
            i += 1
            continue
        kind, indent = begin["kind"], begin["indent"]
        end_marker = f"{indent}# <<< lakebase {kind}"
        try:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == end_marker)
        except StopIteration:
            raise BundleEditError(f"databricks.yml line {i + 1}: no closing '# <<< lakebase {kind}' marker") from None
        out.append(lines[i])
        out.extend(indent + line for line in render_block(kind, choice))
        out.append(lines[end])
        seen[kind] = seen.get(kind, 0) + 1
        i = end + 1
    for kind in ("variables", "env", "resource"):
        if not seen.get(kind):
            raise BundleEditError(
                f"databricks.yml has no '# >>> lakebase {kind}' block; restore it from the template "
                "or edit the Lakebase settings by hand"
            )
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def set_variable_default(text: str, variable: str, value: str) -> str:
    """Set ``variables.<variable>.default`` to ``value``, adding the line if absent."""
    lines = text.splitlines()
    try:
        start = lines.index("variables:")
    except ValueError:
        raise BundleEditError("databricks.yml has no top-level 'variables:' section") from None
    header = re.compile(rf"^  {re.escape(variable)}:\s*$")
    try:
        at = next(i for i in range(start + 1, len(lines)) if header.match(lines[i]))
    except StopIteration:
        raise BundleEditError(f"databricks.yml declares no variable {variable!r}") from None
    # The variable's own lines are those indented deeper than its name.
    end = at + 1
    while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
        end += 1
    while end > at + 1 and not lines[end - 1].strip():
        end -= 1
    new_line = f"    default: {_scalar(value)}"
    for i in range(at + 1, end):
        if re.match(r"^    default:", lines[i]):
            lines[i] = new_line
            break
    else:
        lines.insert(end, new_line)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def apply_choices(text: str, *, experiment_id: str, lakebase: LakebaseChoice) -> str:
    """databricks.yml text with quickstart's choices written in (for both apps)."""
    text = set_variable_default(text, "experiment_id", experiment_id)
    return replace_lakebase_blocks(text, lakebase)
