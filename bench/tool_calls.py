"""Bench figure ``tool_calls``: how many times a tool runs when its run's owner is
SIGKILLed after the tool finished, before the final answer.

Two ``start-server`` processes of a variant (offline model, tokens 0.25 s
apart so the answer takes seconds) share a schema; a background run is
posted to one (the owner), which is SIGKILLed once the tool's call is
recorded in Postgres and the answer has started streaming; the other resumes
the run (default heartbeat settings). Executions are counted from the lines
each tool logs when it runs (the demo tools log their idempotency key, which
names the response). Measured for ``research`` (recorded: a resumed attempt
is not given it to run again) and for ``get_current_time`` (``always_run``:
in the OpenAI variant it runs again when the replayed model call asks for
it; the LangGraph graph goes on from the checkpoint after its tools node).
``tests/test_tool_calls.py`` uses the same harness.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from scripts.server_process import ServerProcess

TERMINAL = {"completed", "failed", "cancelled", "incomplete"}
STARTED = re.compile(r"research '(?P<topic>[^']+)' \(idempotency key (?P<key>\S+)\): started")
FINISHED = re.compile(r"research '(?P<topic>[^']+)' \(idempotency key (?P<key>\S+)\): finished")
CLOCK = re.compile(r"get_current_time \(idempotency key (?P<key>\S+)\): (?P<now>\S+)")

#: ``rows(sql, params)``: run SQL on the bench's (or test's) database.
Rows = Callable[[str, tuple], list[tuple]]


def agent_command(variant: str, log_dir: Path) -> tuple[list[str], dict[str, str]]:
    """argv and environment of ``start-server --agent <variant>``, isolated from a developer's
    ``.env``, Lakebase and MLflow settings."""
    isolated = {
        "AGENT_SERVER_ENV_FILE": "", "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO",
        "MLFLOW_TRACKING_URI": f"sqlite:///{log_dir}/mlflow.db", "MLFLOW_EXPERIMENT_ID": "",
        "DATABRICKS_APP_NAME": "", "LAKEBASE_AUTOSCALING_ENDPOINT": "", "LAKEBASE_AUTOSCALING_PROJECT": "",
        "LAKEBASE_AUTOSCALING_BRANCH": "", "LAKEBASE_INSTANCE_NAME": "",
        "LLM_ENDPOINT_NAME": "", "AGENT_FRAMEWORK": "",
        # Slow tokens: the answer after a tool takes seconds, time to kill the owner in it.
        "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0.25",
    }
    argv = [sys.executable, "-c", "from agent_server.start_server import main; main()", "--agent", variant]
    return argv, isolated


def agent_process(variant: str, log_dir: Path, env: dict[str, str]) -> ServerProcess:
    argv, isolated = agent_command(variant, log_dir)
    return ServerProcess(argv, env={**isolated, **env}, log_path=log_dir / "server.log")


def wait_until(check: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise TimeoutError(f"{what} not seen in {timeout:.0f}s")


class OwnerAndSurvivor:
    """Two ``start-server`` processes of one variant on one schema: runs are posted to the
    owner, which gets SIGKILLed; the survivor resumes them (the default heartbeat settings
    apply: a dead owner's run resumes after about 10 s). A new owner starts when one is
    next needed, appending to the same log."""

    def __init__(self, variant: str, pg_url: str, tmp: Path) -> None:
        self.variant = variant
        self.schema = f"tools_{variant}_{uuid.uuid4().hex[:8]}"
        self.env = {"DATABASE_URL": pg_url, "AGENT_SERVER_DB_SCHEMA": self.schema}
        self.dirs = [tmp / "owner", tmp / "survivor"]
        for path in self.dirs:
            path.mkdir(parents=True)
        self.survivor = agent_process(variant, self.dirs[1], self.env).launch()
        self.current: ServerProcess | None = agent_process(variant, self.dirs[0], self.env).launch()
        self._warm: set[int] = set()

    def owner(self) -> ServerProcess:
        """The owner, started if the last one was killed; both processes warmed up."""
        if self.current is None:
            self.current = agent_process(self.variant, self.dirs[0], self.env).launch()
        for server in (self.survivor, self.current):
            self._warm_up(server.wait_until_healthy(180))
        return self.current

    def _warm_up(self, server: ServerProcess) -> None:
        """A process's first run pays for MLflow's tracking store and the SDK's first call, which
        can hold its event loop for longer than the stale threshold on a loaded machine (its
        runs would then be taken over as if it had died): pay that before measuring."""
        if server.pid in self._warm:
            return
        wait_until(lambda: (server.health() or {}).get("tracing") == "ready", "tracing warm-up", 180)
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            client.post("/responses", json={"input": "hello"}).raise_for_status()
        self._warm.add(server.pid)

    def post_background(self, text: str) -> str:
        with httpx.Client(base_url=self.owner().base_url, timeout=60) as client:
            response = client.post("/responses", json={"input": text, "background": True})
        response.raise_for_status()
        return response.json()["id"]

    def kill_owner(self) -> None:
        """SIGKILL the owner; only the survivor is left to resume its runs."""
        self.current.kill()
        self.current = None

    def finished(self, rid: str, timeout: float = 180.0) -> dict:
        """The response once it ends, read from the survivor (no client request resumes anything)."""
        with httpx.Client(base_url=self.survivor.base_url, timeout=30) as client:
            def ended():
                body = client.get(f"/responses/{rid}").json()
                return body if body.get("status") in TERMINAL else None

            return wait_until(ended, f"the end of {rid}", timeout)

    def recorded_calls(self, rows: Rows, rid: str) -> list[tuple]:
        """``(name, call_key, attempt_number, output)`` of the response's recorded tool calls."""
        return rows(f"SELECT name, call_key, attempt_number, output FROM {self.schema}.tool_calls "
                    "WHERE response_id = %s ORDER BY recorded_at", (rid,))

    def answer_started(self, rows: Rows, rid: str) -> bool:
        return bool(rows(f"SELECT 1 FROM {self.schema}.events WHERE response_id = %s "
                         "AND type = 'response.output_text.delta' LIMIT 1", (rid,)))

    def log(self) -> str:
        return "".join((path / "server.log").read_text(errors="replace") for path in self.dirs
                       if (path / "server.log").exists())

    def close(self) -> None:
        for server in (self.current, self.survivor):
            if server is not None:
                server.kill()


def killed_after_the_tool_finished(pair: OwnerAndSurvivor, rows: Rows, tool: str) -> dict[str, Any]:
    """One run whose owner is killed once ``tool``'s call is recorded; how often the tool ran."""
    topic = f"kelp-{uuid.uuid4().hex[:8]}"
    text = f"Research {topic} for 1 seconds" if tool == "research" else "What time is it?"
    rid = pair.post_background(text)
    wait_until(lambda: pair.recorded_calls(rows, rid), f"the {tool} record")
    # Killed once the answer streams: the step that ran the tool has finished (in LangGraph, checkpointed).
    wait_until(lambda: pair.answer_started(rows, rid), "the answer's first token")
    pair.kill_owner()
    killed = time.monotonic()
    final = pair.finished(rid)
    log = pair.log()
    if tool == "research":
        runs = [m["key"] for m in STARTED.finditer(log) if m["topic"] == topic]
    else:
        runs = [m["key"] for m in CLOCK.finditer(log) if m["key"].startswith(f"{rid}:")]
    return {"response_id": rid, "status": final["status"], "attempt_number": final["attempt_number"],
            "executions": len(runs), "idempotency_keys": sorted(set(runs)),
            "seconds_from_kill_to_end": round(time.monotonic() - killed, 1), "final": final}


# ----- the bench figure ----------------------------------------------------------------

FIGURE = "tool_calls"
TARGET = ("tool runs, killed after it finished", "1 (always_run: OpenAI 2, LangGraph 1)",
          lambda f: all(v["research"] == 1 for v in f["executions"].values()))


def run(ctx, _server) -> dict[str, Any]:
    """Both variants (the OpenAI one only with ``--quick``): executions of each tool."""
    variants = ["openai"] if ctx.quick else ["langgraph", "openai"]
    executions, problems = {}, []
    for variant in variants:
        pair = OwnerAndSurvivor(variant, ctx.pg_url, ctx.tmp / f"tool-calls-{variant}")
        try:
            counts = {}
            for tool in ("research", "get_current_time"):
                result = killed_after_the_tool_finished(pair, ctx.pg.rows, tool)
                counts[tool] = result["executions"]
                if result["status"] != "completed" or result["attempt_number"] != 2:
                    problems.append(f"{variant} {tool}: {result['status']} after attempt {result['attempt_number']}")
                if len(result["idempotency_keys"]) != 1:
                    problems.append(f"{variant} {tool}: keys {result['idempotency_keys']}")
            executions[variant] = counts
        finally:
            pair.close()
    return {"executions": executions, "intact": not problems, "problems": problems}


def measured(f: dict) -> str:
    return "; ".join(f"{variant}: research {c['research']}, get_current_time {c['get_current_time']}"
                     for variant, c in f["executions"].items())
