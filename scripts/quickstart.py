"""Set up this project against a Databricks workspace, ready to run and deploy.

Quickstart, through ``databricks-sdk`` (no Databricks CLI needed):

1. authenticates with a CLI profile (``--profile``) or a host (``--host``),
2. picks the MLflow experiment (``--experiment-id``) or creates it
   (``--experiment-name``, default ``/Users/<you>/long-running-agent``),
3. picks or creates the Lakebase database: an autoscaling endpoint
   (``--lakebase-endpoint``), an autoscaling project and branch
   (``--lakebase-project`` [``--lakebase-branch``]) or a provisioned instance
   (``--lakebase-instance`` [``--create-instance``]),
4. writes the choices into ``.env`` (created from ``.env.example``) for local
   runs and into ``databricks.yml`` for both apps.

Run it again any time: with the same choices it creates and changes nothing.
Without Lakebase or experiment options it keeps what ``.env`` already says.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import env_file
from .bundle_config import BundleEditError, apply_choices
from .workspace_setup import (
    LakebaseSetup,
    SetupError,
    ensure_experiment,
    lakebase_from_endpoint,
    lakebase_from_instance,
    lakebase_from_project,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quickstart",
        description=(
            "Configure this project for a Databricks workspace: MLflow experiment, Lakebase database, "
            ".env for local runs and databricks.yml for both apps. Idempotent."
        ),
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--profile", help="Databricks CLI profile from ~/.databrickscfg (written to .env)")
    auth.add_argument("--host", help="workspace URL, e.g. https://<workspace>.cloud.databricks.com (written to .env)")

    exp = parser.add_mutually_exclusive_group()
    exp.add_argument("--experiment-id", help="use this existing MLflow experiment")
    exp.add_argument(
        "--experiment-name",
        help="use or create the experiment at this workspace path (default /Users/<you>/long-running-agent)",
    )

    lakebase = parser.add_mutually_exclusive_group()
    lakebase.add_argument(
        "--lakebase-endpoint",
        metavar="PATH",
        help="existing autoscaling endpoint: projects/<project>/branches/<branch>/endpoints/<endpoint>",
    )
    lakebase.add_argument(
        "--lakebase-project", metavar="ID", help="autoscaling project to use, created if missing"
    )
    lakebase.add_argument("--lakebase-instance", metavar="NAME", help="Lakebase Provisioned instance to use")
    parser.add_argument(
        "--lakebase-branch", metavar="ID", help="branch of --lakebase-project (default: the project's default branch)"
    )
    parser.add_argument(
        "--create-instance", action="store_true", help="create --lakebase-instance (capacity CU_1) if it is missing"
    )
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=Path.cwd(),
        help="folder with databricks.yml, .env.example and .env (default: the current folder)",
    )
    return parser


def _workspace_client(profile: str | None, host: str | None):
    from databricks.sdk import WorkspaceClient

    if profile:
        return WorkspaceClient(profile=profile)
    if host:
        return WorkspaceClient(host=host)
    return WorkspaceClient()


def _choose_lakebase(w, args, current: dict[str, str]) -> LakebaseSetup:
    """From the options, else from what .env already holds."""
    if args.lakebase_branch and not args.lakebase_project:
        raise SetupError("--lakebase-branch needs --lakebase-project")
    if args.create_instance and not args.lakebase_instance:
        raise SetupError("--create-instance needs --lakebase-instance")
    if args.lakebase_endpoint:
        return lakebase_from_endpoint(w, args.lakebase_endpoint)
    if args.lakebase_project:
        return lakebase_from_project(w, args.lakebase_project, args.lakebase_branch)
    if args.lakebase_instance:
        return lakebase_from_instance(w, args.lakebase_instance, create=args.create_instance)
    if current.get("LAKEBASE_AUTOSCALING_ENDPOINT"):
        return lakebase_from_endpoint(w, current["LAKEBASE_AUTOSCALING_ENDPOINT"])
    if current.get("LAKEBASE_AUTOSCALING_PROJECT"):
        return lakebase_from_project(w, current["LAKEBASE_AUTOSCALING_PROJECT"], current.get("LAKEBASE_AUTOSCALING_BRANCH"))
    if current.get("LAKEBASE_INSTANCE_NAME"):
        return lakebase_from_instance(w, current["LAKEBASE_INSTANCE_NAME"], create=False)
    raise SetupError(
        "choose a Lakebase database: --lakebase-project <id> (created if missing), "
        "--lakebase-endpoint projects/<p>/branches/<b>/endpoints/<e>, or --lakebase-instance <name>"
    )


def run(args: argparse.Namespace) -> list[str]:
    """Do the setup; return the lines of the summary."""
    root: Path = args.project_dir.resolve()
    bundle_path = root / "databricks.yml"
    env_path = root / ".env"
    if not bundle_path.is_file():
        raise SetupError(f"no databricks.yml in {root}; run quickstart from the project folder or pass --project-dir")
    current = env_file.read_values(env_path.read_text()) if env_path.exists() else {}

    profile = args.profile or (None if args.host else current.get("DATABRICKS_CONFIG_PROFILE"))
    host = args.host or (None if profile else current.get("DATABRICKS_HOST"))
    w = _workspace_client(profile, host)
    try:
        user = w.current_user.me().user_name
    except Exception as exc:  # any auth or network failure: say what to do about it
        raise SetupError(
            f"cannot reach the workspace as you ({exc}). Log in with `databricks auth login --host <url>` and pass "
            "--profile, or set DATABRICKS_HOST and DATABRICKS_TOKEN."
        ) from exc
    summary = [f"workspace {w.config.host} as {user}"]

    experiment_id, note = ensure_experiment(
        w,
        experiment_id=args.experiment_id or (None if args.experiment_name else current.get("MLFLOW_EXPERIMENT_ID")),
        experiment_name=args.experiment_name,
    )
    summary.append(note)
    lakebase = _choose_lakebase(w, args, current)
    summary.append(f"using {lakebase.description}")

    updates: dict[str, str | None] = {}
    # One auth source in .env: a profile and a host that disagree confuse the SDK.
    if profile:
        updates |= {"DATABRICKS_CONFIG_PROFILE": profile, "DATABRICKS_HOST": None}
    elif host:
        updates |= {"DATABRICKS_HOST": host, "DATABRICKS_CONFIG_PROFILE": None}
    updates |= {
        "MLFLOW_TRACKING_URI": "databricks",
        "MLFLOW_REGISTRY_URI": "databricks-uc",
        "MLFLOW_EXPERIMENT_ID": experiment_id,
        **lakebase.env,
    }
    changed = env_file.update_file(env_path, updates, template=root / ".env.example")
    summary.append(f".env {'updated' if changed else 'unchanged'}")

    before = bundle_path.read_text()
    after = apply_choices(before, experiment_id=experiment_id, lakebase=lakebase.bundle)
    if after != before:
        bundle_path.write_text(after)
    summary.append(f"databricks.yml {'updated' if after != before else 'unchanged'} (both apps)")

    if env_file.read_values(env_path.read_text()).get("DATABASE_URL"):
        summary.append("note: DATABASE_URL in .env takes precedence over Lakebase for local runs; remove it to use Lakebase")
    return summary


NEXT_STEPS = """
next steps:
  uv run start-server                      # run locally against this configuration
  uv run preflight                         # check the three request patterns end to end
  databricks bundle deploy                 # deploy both apps
  databricks bundle run agent_openai       # start the OpenAI Agents SDK app
  databricks bundle run agent_langgraph    # start the LangGraph app
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except (SetupError, BundleEditError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in summary:
        print(line)
    print(NEXT_STEPS.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
