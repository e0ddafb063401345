"""List what a Databricks workspace offers an agent as tools.

``uv run discover-tools`` asks the workspace (through ``databricks-sdk``, read
only) for Unity Catalog functions, Vector Search indexes, Genie spaces, MCP
servers running as Databricks Apps and Unity Catalog connections, and prints
for each the ``databricks.yml`` resource that grants the apps access and the
code that connects either agent variant to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .env_file import read_values
from .server_process import PROJECT_ROOT
from .tool_discovery import KINDS, Discovery, discover
from .tool_snippets import langgraph_snippet, openai_snippet, resource_yaml


class NotAuthenticated(RuntimeError):
    """No usable Databricks credentials; the message says how to get some."""


HOW_TO_LOG_IN = (
    "Log in with `databricks auth login --host <workspace-url>` and pass --profile <name>, "
    "or set DATABRICKS_HOST and DATABRICKS_TOKEN (`uv run quickstart` writes them to .env)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="discover-tools",
        description=(
            "List the tools a Databricks workspace offers an agent (UC functions, Vector Search indexes, "
            "Genie spaces, MCP apps, UC connections) with the databricks.yml resource and code for each. "
            "Read only."
        ),
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--profile", help="Databricks CLI profile (default: DATABRICKS_CONFIG_PROFILE from .env)")
    auth.add_argument("--host", help="workspace URL (default: DATABRICKS_HOST from .env)")
    parser.add_argument(
        "--kind", action="append", choices=list(KINDS), help="only this kind (repeatable; default: all)"
    )
    parser.add_argument("--catalog", help="look for UC functions in this catalog only")
    parser.add_argument("--schema", help="... and this schema only (needs --catalog)")
    parser.add_argument(
        "--max-schemas", type=int, default=50, metavar="N", help="schemas to search for UC functions (default 50)"
    )
    parser.add_argument("--limit", type=int, default=50, metavar="N", help="items to list per kind (default 50)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def load_auth_from_env_file() -> None:
    """Databricks settings from the project's .env (where quickstart writes
    them), unless the environment already has them. Empty values count as
    unset, as everywhere in this project."""
    path = os.environ.get("AGENT_SERVER_ENV_FILE", str(PROJECT_ROOT / ".env"))
    if not path or not Path(path).is_file():
        return
    for key, value in read_values(Path(path).read_text()).items():
        if key.startswith("DATABRICKS_") and value and not os.environ.get(key):
            os.environ[key] = value


def connect(profile: str | None, host: str | None):
    """A WorkspaceClient that has shown it can authenticate, and who it is."""
    from databricks.sdk import WorkspaceClient

    try:
        if profile:
            w = WorkspaceClient(profile=profile)
        elif host:
            w = WorkspaceClient(host=host)
        else:
            w = WorkspaceClient()
    except ValueError as exc:  # the SDK found no credentials at all
        raise NotAuthenticated(f"no Databricks credentials found ({exc}). {HOW_TO_LOG_IN}") from None
    try:
        user = w.current_user.me().user_name
    except Exception as exc:  # expired token, wrong host, network: say what to do
        raise NotAuthenticated(f"cannot reach {w.config.host} as you ({exc}). {HOW_TO_LOG_IN}") from None
    return w, user


def render_text(result: Discovery, host: str, user: str) -> str:
    out = [f"Workspace {host} as {user}", ""]
    out.append("Add a resource under `resources:` of each app in databricks.yml (agent_openai and")
    out.append("agent_langgraph) so the deployed apps may use it; locally your own permissions apply.")
    for kind, (heading, _) in KINDS.items():
        if kind in result.skipped:
            out += ["", f"== {heading}: skipped ({result.skipped[kind]})"]
            continue
        if kind not in result.found:
            continue
        items = result.found[kind]
        more = " (more exist: raise --limit)" if result.truncated.get(kind) else ""
        out += ["", f"== {heading} ({len(items)}){more}"]
        if not items:
            out.append("   none found")
        for found in items:
            line = f"-- {found.name}"
            details = "; ".join(part for part in (found.description, found.note) if part)
            out += ["", line + (f": {details}" if details else "")]
            out += ["   databricks.yml resource:", textwrap.indent(resource_yaml(found), "     ")]
            for label, snippet in (
                ("OpenAI Agents SDK (agent_server/agents/openai_agent.py)", openai_snippet(found)),
                ("LangGraph (agent_server/agents/langgraph_agent.py)", langgraph_snippet(found)),
            ):
                if snippet:
                    out += [f"   {label}:", textwrap.indent(snippet, "     ")]
    return "\n".join(out) + "\n"


def render_json(result: Discovery, host: str, user: str) -> str:
    kinds = {}
    for kind, items in result.found.items():
        kinds[kind] = [
            {
                **asdict(found),
                "resource_yaml": resource_yaml(found),
                "openai_snippet": openai_snippet(found),
                "langgraph_snippet": langgraph_snippet(found),
            }
            for found in items
        ]
    return json.dumps(
        {"host": host, "user": user, "found": kinds, "skipped": result.skipped, "truncated": result.truncated},
        indent=2,
    ) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.schema and not args.catalog:
        print("error: --schema needs --catalog", file=sys.stderr)
        return 2
    if args.limit < 1 or args.max_schemas < 1:
        print("error: --limit and --max-schemas must be at least 1", file=sys.stderr)
        return 2
    load_auth_from_env_file()
    try:
        w, user = connect(args.profile, args.host)
    except NotAuthenticated as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = discover(
        w, args.kind, limit=args.limit, catalog=args.catalog, schema=args.schema, max_schemas=args.max_schemas
    )
    render = render_json if args.json else render_text
    sys.stdout.write(render(result, w.config.host, user))
    return 0


if __name__ == "__main__":
    sys.exit(main())
