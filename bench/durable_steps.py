"""Resuming at the step, measured: real ``start-server`` processes on a scripted, counting serving endpoint.

A run asks the agent to "Research <tag> in <n> steps": the scripted endpoint
(``harness/scripted_endpoint.py``) answers the first ``n - 1`` model calls with
a call of the demo ``research`` tool (the last one slow) and the ``n``-th
with the answer. The server that owns the run is SIGKILLed while the last
tool runs; another server process resumes it. ``tests/test_durable_steps.py``
uses the same rig; ``python -m bench.durable_steps`` prints the figures:

- ``model calls``: what the endpoint saw for a resumed ``n``-step run, what a
  run without a crash costs, and what restarting from the first step (what
  a resumed run did before the journal) would have cost;
- ``tokens``: the tokens the endpoint billed for the calls a resumed run did
  not make again (its usage, four characters a token);
- ``replay``: seconds to replay 1,000 recorded model calls through the
  OpenAI Agents SDK adapter (read from Postgres, each call's input digested,
  its items rebuilt), in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from harness.scripted_endpoint import ScriptedEndpoint, text_of, tool_call
from bench.tool_calls import TERMINAL, agent_process, wait_until
from scripts.server_process import ServerProcess

_PLAN = re.compile(r"Research (?P<tag>[\w-]+) in (?P<steps>\d+) steps")
STARTED = re.compile(r"research '(?P<topic>[^']+)' \(idempotency key (?P<key>\S+)\): started")
#: Seconds each research step takes; the last, during which the owner is killed, takes longer.
STEP_SECONDS = 0.2
LAST_STEP_SECONDS = 8.0


def planned_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The scripted model: ``n - 1`` research calls, one per model call, then the answer."""
    messages = body["messages"]
    request = next((text_of(m.get("content")) for m in messages if m["role"] == "user"), "")
    plan = _PLAN.search(request)
    if plan is None:
        return {"role": "assistant", "content": "Hello from the scripted serving endpoint."}
    tag, steps = plan["tag"], int(plan["steps"])
    done = sum(1 for m in messages if m["role"] == "tool")
    if done < steps - 1:
        seconds = LAST_STEP_SECONDS if done == steps - 2 else STEP_SECONDS
        return tool_call("research", {"topic": topic(tag, done + 1), "seconds": seconds})
    return {"role": "assistant", "content": f"All {done} studies of {tag} are done; each one finished in order."}


def topic(tag: str, step: int) -> str:
    return f"{tag}-step{step}"


class StepsRig:
    """Server processes of one variant on one schema, all calling one scripted endpoint."""

    def __init__(self, variant: str, pg_url: str, tmp: Path, endpoint: ScriptedEndpoint):
        self.variant = variant
        self.tmp = tmp
        self.endpoint = endpoint
        self.schema = f"steps_{variant}_{uuid.uuid4().hex[:8]}"
        self.env = {"DATABASE_URL": pg_url, "AGENT_SERVER_DB_SCHEMA": self.schema}
        self.servers: list[ServerProcess] = []

    def start(self) -> ServerProcess:
        """A new server process, healthy and warmed up (its first run pays for MLflow and the SDK)."""
        log_dir = self.tmp / f"server-{len(self.servers)}"
        log_dir.mkdir(parents=True)
        server = agent_process(self.variant, log_dir, {**self.endpoint.server_env(log_dir), **self.env})
        self.servers.append(server.launch())
        server.wait_until_healthy(180)
        wait_until(lambda: (server.health() or {}).get("tracing") == "ready", "tracing warm-up", 180)
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            client.post("/responses", json={"input": "hello"}).raise_for_status()
        return server

    def post(self, server: ServerProcess, text: str) -> str:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            response = client.post("/responses", json={"input": text, "background": True})
        response.raise_for_status()
        return response.json()["id"]

    def log(self) -> str:
        return "".join(server.log_path.read_text(errors="replace") for server in self.servers
                       if server.log_path and server.log_path.exists())

    def research_keys(self, topic_name: str) -> list[str]:
        """The idempotency key of every start of ``research`` on ``topic_name``, in any process."""
        return [m["key"] for m in STARTED.finditer(self.log()) if m["topic"] == topic_name]

    def finished(self, server: ServerProcess, rid: str, timeout: float = 180.0) -> dict[str, Any]:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            def ended():
                body = client.get(f"/responses/{rid}").json()
                return body if body.get("status") in TERMINAL else None

            return wait_until(ended, f"the end of {rid}", timeout)

    def events(self, server: ServerProcess, rid: str) -> list[dict[str, Any]]:
        """Every event of the response, as a client streaming it from the start reads them."""
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            response = client.get(f"/responses/{rid}", params={"stream": "true"})
        return [json.loads(line[6:]) for line in response.text.splitlines()
                if line.startswith("data: ") and line != "data: [DONE]"]

    def killed_during_the_last_step(self, owner: ServerProcess, steps: int) -> dict[str, Any]:
        """One ``steps``-step run posted to ``owner``, which is SIGKILLed while the last tool runs."""
        tag = f"t{uuid.uuid4().hex[:8]}"
        rid = self.post(owner, f"Research {tag} in {steps} steps")
        wait_until(lambda: self.research_keys(topic(tag, steps - 1)), "the last research step starting")
        owner.kill()
        return {"tag": tag, "response_id": rid}

    def close(self) -> None:
        for server in self.servers:
            server.kill()


def billed_tokens(calls: list[dict[str, Any]]) -> int:
    """What the scripted endpoint billed for ``calls`` (prompt and completion tokens)."""
    return sum(call["usage"]["total_tokens"] for call in calls)


# ----- the figures ----------------------------------------------------------------------

def resumed_run_figures(variant: str, pg_url: str, tmp: Path, steps: int = 10) -> dict[str, Any]:
    """Model calls and tokens of a ``steps``-step run resumed after a kill during its last tool."""
    with ScriptedEndpoint(planned_reply) as endpoint:
        rig = StepsRig(variant, pg_url, tmp, endpoint)
        try:
            owner = rig.start()
            survivor = rig.start()
            baseline_tag = f"t{uuid.uuid4().hex[:8]}"
            baseline = rig.finished(survivor, rig.post(survivor, f"Research {baseline_tag} in {steps} steps"))
            without_a_crash = len(endpoint.chat_requests(containing=baseline_tag))
            killed = rig.killed_during_the_last_step(owner, steps)
            before = endpoint.chat_requests(containing=killed["tag"])
            final = rig.finished(survivor, killed["response_id"])
            calls = endpoint.chat_requests(containing=killed["tag"])
        finally:
            rig.close()
    replayed = len(before)  # calls the dead attempt finished: the resumed one did not make them again
    return {"variant": variant, "steps": steps, "status": final["status"], "attempt": final["attempt_number"],
            "model_calls": len(calls), "without_a_crash": without_a_crash, "baseline_status": baseline["status"],
            "restarting_from_the_first_step": replayed + without_a_crash,
            "calls_saved": replayed, "tokens_saved": billed_tokens(before)}


async def replay_seconds(pg_url: str, steps: int = 1000) -> dict[str, float]:
    """Seconds to load and replay ``steps`` recorded model calls through :class:`JournaledModel`.

    Each call's input is the run so far (two more items per step), as in a real run, so its digest
    costs what it would; the stored result is a tool call, as most steps of a long run are.
    """
    from agents import ModelSettings
    from agents.models.interface import ModelTracing

    from agent_server.agents.openai_adapter.journal import JournaledModel, call_digest, recorded_result
    from agent_server.long_running.journal.approvals import AttemptApprovals
    from agent_server.long_running.journal.model_calls import ModelCallJournal
    from agent_server.long_running.journal.steps import StoreCheckpointDatabase, AttemptSteps, attempt_steps
    from agent_server.long_running.storage.database import Database, DatabaseTarget
    from agent_server.long_running.storage.queries import Queries
    from agent_server.long_running.storage.store import Store
    from openai.types.responses import ResponseFunctionToolCall

    db = Database(DatabaseTarget("url", url=pg_url), Queries(f"replay_{uuid.uuid4().hex[:8]}"), 30000)
    await db.open()
    try:
        store = Store(db)
        rid = f"resp_{uuid.uuid4().hex}"
        await store.insert_response(response_id=rid, owner="bench", status=_in_progress(), worker_id=None,
                                    created_at=time.time(), request={"input": []}, request_headers={},
                                    model="bench", created_event=json.dumps({"type": "response.created"}))
        inputs: list[list[dict[str, Any]]] = []
        history: list[dict[str, Any]] = [{"role": "user", "content": "Research the tides in 1000 steps"}]
        for step in range(steps):
            inputs.append(list(history))
            call = ResponseFunctionToolCall(type="function_call", call_id=f"call_{step}", name="research",
                                            arguments=json.dumps({"topic": f"tides-{step}"}), id="__fake_id__")
            await store.record_model_call(rid, 1, step, call_digest("Be brief.", history, [], None, []),
                                          recorded_result([call], None, None))
            history += [call.model_dump(exclude_unset=True),
                        {"type": "function_call_output", "call_id": f"call_{step}", "output": f"notes {step}"}]
        started = time.perf_counter()
        journal = ModelCallJournal(rid, 2, await store.recorded_model_calls(rid), _not_recorded, 1 << 30)
        steps_context = AttemptSteps(rid, 2, True, journal, StoreCheckpointDatabase(store),
                                     AttemptApprovals(rid, _not_recorded, _not_recorded))
        model = JournaledModel(_NeverCalled())
        with attempt_steps(steps_context):
            for step_input in inputs:
                async for _event in model.stream_response("Be brief.", step_input, ModelSettings(), [], None, [],
                                                          ModelTracing.DISABLED):
                    pass
        elapsed = time.perf_counter() - started
        assert journal.replayed == steps, journal.replayed
        return {"steps": steps, "seconds": round(elapsed, 3)}
    finally:
        await db.close()


def _in_progress():
    from agent_server.long_running.storage.models import Status

    return Status.IN_PROGRESS


async def _not_recorded(*_args) -> None:
    raise AssertionError("a replayed call recorded something")


class _NeverCalled:
    async def stream_response(self, *args, **kwargs):
        raise AssertionError("the model was called during a replay")
        yield  # pragma: no cover


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="openai,langgraph")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    from agent_server.long_running.storage.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="durable-steps-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        pg_url = pg.start()
        try:
            figures = {"replay": asyncio.run(replay_seconds(pg_url))}
            for variant in args.variants.split(","):
                figures[variant] = resumed_run_figures(variant, pg_url, Path(tmp) / variant, args.steps)
        finally:
            pg.stop()
    json.dump(figures, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
