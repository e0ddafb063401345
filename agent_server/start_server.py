"""Start the agent server: ``uv run start-server [--agent openai|langgraph] [--port N] [--workers N] [--reload]``.

You normally don't edit this file: the agent lives in ``agent_server/agents/``
(``openai_agent.py`` or ``langgraph_agent.py``) and settings come from the
environment or ``.env`` (see ``.env.example``).
"""

# ruff: noqa: E402  (the .env file must be loaded before anything reads the environment)
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Load .env before importing the agent, so auth and model settings are in place.
# AGENT_SERVER_ENV_FILE points elsewhere; set it empty to load no file (tests do).
_env_file = os.environ.get("AGENT_SERVER_ENV_FILE", str(PROJECT_ROOT / ".env"))
if _env_file:
    load_dotenv(dotenv_path=_env_file, override=True)

from agent_server.agents import DEFAULT_FRAMEWORK, FRAMEWORKS, load_agent
from agent_server.agents.common.model_choice import choose_model
from agent_server.long_running import LongRunningAgentServer
from agent_server.utils import LakebaseConfigError, init_lakebase_config, replace_fake_id

logging.basicConfig(
    level=(os.environ.get("LOG_LEVEL") or "INFO").upper(),
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
logger = logging.getLogger("agent_server")


def _agent_flag_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--agent", choices=sorted(FRAMEWORKS), help="agent variant (default: AGENT_FRAMEWORK or openai)")
    return parser


def resolve_framework(argv: list[str]) -> str:
    """``--agent`` from ``argv``, else ``AGENT_FRAMEWORK``, else ``openai``."""
    args, _ = _agent_flag_parser().parse_known_args(argv)
    framework = args.agent or (os.environ.get("AGENT_FRAMEWORK") or "").strip() or DEFAULT_FRAMEWORK
    if framework not in FRAMEWORKS:
        raise SystemExit(f"AGENT_FRAMEWORK={framework!r} is not an agent variant: use one of {', '.join(FRAMEWORKS)}")
    return framework


def _number(name: str, default: float, kind=float):
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a {'whole ' if kind is int else ''}number, got {raw!r}") from None


# The variant is picked here, at import (its module is imported, which registers
# its handlers, once the server has started): `uv run start-server --agent X`
# imports this module before main() runs. Exported so --workers / --reload
# processes (which import this module afresh) pick the same variant.
FRAMEWORK = resolve_framework(sys.argv[1:])
os.environ["AGENT_FRAMEWORK"] = FRAMEWORK
MODEL = choose_model()  # the variant makes the same choice
logger.info("Agent variant %s; model %s (%s)", FRAMEWORK, MODEL.name, MODEL.reason)


class AgentServer(LongRunningAgentServer):
    """The server with the SDKs' placeholder ids replaced by the real response id."""

    def transform_stream_event(self, event: dict, response_id: str) -> dict:
        return replace_fake_id(event, response_id)


try:
    LAKEBASE = init_lakebase_config()
except LakebaseConfigError as exc:
    raise SystemExit(str(exc)) from None

# The server's own lifespan creates its tables at start-up (and retries while
# the database is unreachable; /health says why). A malformed setting stops here, named.
try:
    agent_server = AgentServer(
        "ResponsesAgent",
        enable_chat_proxy=False,
        db_instance_name=LAKEBASE.instance_name,
        db_autoscaling_endpoint=LAKEBASE.autoscaling_endpoint,
        db_project=LAKEBASE.autoscaling_project,
        db_branch=LAKEBASE.autoscaling_branch,
        database_url=os.environ.get("DATABASE_URL") or None,
        db_schema=os.environ.get("AGENT_SERVER_DB_SCHEMA") or "agent_server",
        task_timeout_seconds=_number("TASK_TIMEOUT_SECONDS", 3600.0),
        poll_interval_seconds=_number("POLL_INTERVAL_SECONDS", 1.0),
        max_concurrent_tasks=_number("MAX_CONCURRENT_TASKS", 100, int),
        db_request_timeout_seconds=_number("DB_REQUEST_TIMEOUT_SECONDS", 2.0),
        shutdown_timeout_seconds=_number("SHUTDOWN_TIMEOUT_SECONDS", 5.0),
        model_name=MODEL.name,
        multitask_strategy=(os.environ.get("MULTITASK_STRATEGY") or "enqueue").strip(),
        memory_max_chars=_number("MEMORY_MAX_CHARS", 2000, int),
        memory_max_per_identity=_number("MEMORY_MAX_PER_IDENTITY", 1000, int),
        memory_embedding_endpoint=(os.environ.get("DATABRICKS_EMBEDDING_ENDPOINT") or "").strip() or None,
        approval_timeout_seconds=_number("APPROVAL_TIMEOUT_SECONDS", 7 * 24 * 3600.0),
    )
except ValueError as exc:
    raise SystemExit(f"Cannot start the server: {exc}") from None


def load_the_agent() -> None:
    """Import the variant (which registers its @invoke() / @stream() handlers) and set up tracing
    extras. Its agent SDK, like MLflow, takes seconds to import: the server calls this in a thread
    once it answers (/health does not wait; the first runs do)."""
    load_agent(FRAMEWORK)
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        from mlflow.genai.agent_server import setup_mlflow_git_based_version_tracking

        try:
            setup_mlflow_git_based_version_tracking()
        except Exception as exc:  # tracing extras must never stop the server
            logger.warning("MLflow git-based version tracking not set up: %s", exc)


agent_server.import_handlers_after_start(load_the_agent)
# Module-level, so uvicorn workers can import it by name.
app = agent_server.app


def page_url(argv: list[str], environ) -> str:
    """Where a browser on this machine finds the page, for ``--port`` / ``PORT`` / ``HOST``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--port", type=int, default=int(environ.get("PORT") or 8000))
    args, _ = parser.parse_known_args(argv)
    host = environ.get("HOST") or "0.0.0.0"
    # A server listening on every interface is reached as localhost.
    shown = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1") else host
    return f"http://{shown}:{args.port}/"


def main() -> None:
    """Entry point of ``uv run start-server``."""
    parser = argparse.ArgumentParser(
        description="Start the long-running agent server.", parents=[_agent_flag_parser()],
        epilog="Also: --port N (default $PORT or 8000), --workers N, --reload.",
    )
    parser.parse_known_args()  # --help and a bad --agent value end here
    if not os.environ.get("DATABRICKS_APP_NAME"):  # deployed, the app's URL is in the workspace
        print(f"Open {page_url(sys.argv[1:], os.environ)} for the agent's page", flush=True)
    agent_server.run("agent_server.start_server:app", host=os.environ.get("HOST") or "0.0.0.0", argv=sys.argv[1:])


if __name__ == "__main__":
    main()
