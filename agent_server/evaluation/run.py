"""``uv run agent-evaluate [--agent openai|langgraph] [--dataset FILE] [--judge-model URI]``.

Runs the agent (in this process, through its ``@invoke()`` handler) on each
dataset row with ``mlflow.genai.evaluate``, prints one line per row and
scorer, and exits 1 if any assessment failed (2 for a bad dataset or
setting). Results go to ``MLFLOW_EXPERIMENT_ID`` when set, else to a local
SQLite store.
"""

# ruff: noqa: E402  (the .env file must be loaded before anything reads the environment)
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_TRACKING_URI = f"sqlite:///{PROJECT_ROOT / '.data' / 'mlflow.db'}"
LOCAL_EXPERIMENT = "agent-evaluation"
PASSING = {"yes", "true", "pass", "1"}

logger = logging.getLogger("agent_evaluate")


def _load_env() -> None:
    # As start-server does: the project's .env, AGENT_SERVER_ENV_FILE, or (empty) none.
    env_file = os.environ.get("AGENT_SERVER_ENV_FILE", str(PROJECT_ROOT / ".env"))
    if env_file:
        load_dotenv(dotenv_path=env_file, override=True)


def _parser() -> argparse.ArgumentParser:
    from agent_server.evaluation.dataset import DEFAULT_DATASET

    parser = argparse.ArgumentParser(prog="agent-evaluate", description="Evaluate the agent with MLflow GenAI.")
    parser.add_argument("--agent", choices=["openai", "langgraph"],
                        help="agent variant (default: AGENT_FRAMEWORK or openai)")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET,
                        help=f"JSONL dataset (default: {DEFAULT_DATASET.relative_to(PROJECT_ROOT)})")
    parser.add_argument("--judge-model", default=os.environ.get("EVAL_JUDGE_MODEL") or None,
                        help="model for the LLM judges, e.g. databricks:/<endpoint> (default: EVAL_JUDGE_MODEL, "
                             "else the agent's Databricks endpoint; none with the offline model)")
    return parser


def _use_tracking(mlflow) -> str:
    """Point MLflow at the experiment (or the local store); says where, for the log."""
    experiment_id = (os.environ.get("MLFLOW_EXPERIMENT_ID") or "").strip()
    if experiment_id:
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or "databricks")
        mlflow.set_experiment(experiment_id=experiment_id)
        return f"experiment {experiment_id} ({mlflow.get_tracking_uri()})"
    uri = (os.environ.get("MLFLOW_TRACKING_URI") or "").strip()
    if not uri or uri.startswith("databricks"):
        uri = LOCAL_TRACKING_URI
        (PROJECT_ROOT / ".data").mkdir(exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(LOCAL_EXPERIMENT)
    return f"experiment {LOCAL_EXPERIMENT!r} in {uri}"


def _predict_fn(agent):
    from mlflow.types.responses import ResponsesAgentRequest

    def predict(input) -> dict:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        result = asyncio.run(agent.invoke_handler(ResponsesAgentRequest(input=items)))
        return result if isinstance(result, dict) else result.model_dump()

    return predict


def _cell(value, width: int) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _request_text(request) -> str:
    """The row's question: the input text, or the last input item's text."""
    from agent_server.agents.common.message_text import text_of

    if isinstance(request, dict):
        request = request.get("input", request)
    if isinstance(request, list) and request and isinstance(request[-1], dict):
        return text_of(request[-1].get("content"))
    return str(request)


def print_table(result_df, scorer_names: list[str], out=sys.stdout) -> int:
    """One line per row and scorer; returns how many assessments failed."""
    failed = 0
    print(f"{'row':>3}  {'input':<36}  {'scorer':<24}  {'result':<6}  rationale", file=out)
    for number, (_, row) in enumerate(result_df.iterrows(), start=1):
        request = _request_text(row.get("request"))
        for name in scorer_names:
            value = row.get(f"{name}/value")
            passed = str(value).strip().lower() in PASSING
            failed += not passed
            result = "pass" if passed else ("error" if value is None else "fail")
            rationale = row.get(f"{name}/rationale") or row.get(f"{name}/error_message") or ""
            print(f"{number:>3}  {_cell(request, 36):<36}  {_cell(name, 24):<24}  {result:<6}  "
                  f"{_cell(rationale, 80)}", file=out)
    return failed


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``uv run agent-evaluate``; the exit code."""
    _load_env()
    args = _parser().parse_args(argv)
    logging.basicConfig(level=(os.environ.get("LOG_LEVEL") or "WARNING").upper(),
                        format="%(levelname)s %(name)s: %(message)s")

    from agent_server.evaluation.dataset import DatasetError, load_dataset

    try:
        rows = load_dataset(args.dataset)
    except DatasetError as error:
        print(f"agent-evaluate: {error}", file=sys.stderr)
        return 2

    # Skip MLflow's extra trial prediction of the first row: the run itself shows any error.
    os.environ.setdefault("MLFLOW_GENAI_EVAL_SKIP_TRACE_VALIDATION", "true")
    import mlflow

    from agent_server.agents import DEFAULT_FRAMEWORK, FRAMEWORKS, load_agent
    from agent_server.evaluation.scorers import OFFLINE_SCORERS, judge_scorers

    framework = args.agent or (os.environ.get("AGENT_FRAMEWORK") or "").strip() or DEFAULT_FRAMEWORK
    if framework not in FRAMEWORKS:
        print(f"agent-evaluate: AGENT_FRAMEWORK={framework!r} is not an agent variant: use one of "
              f"{', '.join(FRAMEWORKS)}", file=sys.stderr)
        return 2
    where = _use_tracking(mlflow)
    agent = load_agent(framework)
    judge_model = args.judge_model or (None if agent.MODEL.offline else f"databricks:/{agent.MODEL.endpoint}")
    scorers = [*OFFLINE_SCORERS, *(judge_scorers(judge_model) if judge_model else [])]

    print(f"Evaluating the {framework} agent (model {agent.MODEL.name}) on {len(rows)} rows of {args.dataset}")
    print(f"Judges: {judge_model}" if judge_model else
          "Judges: none (offline model; set LLM_ENDPOINT_NAME with Databricks auth, or --judge-model)")
    result = mlflow.genai.evaluate(data=rows, predict_fn=_predict_fn(agent), scorers=scorers)
    failed = print_table(result.result_df, [s.name for s in scorers])
    total = len(rows) * len(scorers)
    print(f"{total - failed} of {total} assessments passed; results logged to {where} (run {result.run_id})")
    return 1 if failed else 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
