"""One model turn that calls two tools needing approval: one pause, two requests, answered together
or in part. Both variants, each a real ``start-server`` calling a scripted serving endpoint on
127.0.0.1 (``harness/scripted_endpoint.py``, ``team_reply`` of ``tests/support.py``) that
answers "Email the team about …" with two ``send_email`` calls at once, as a model calling tools in
parallel does, and then summarises the tool results it is given. The official ``openai`` client
asks and answers.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.responses.response_output_item import McpApprovalRequest

from agent_server.agents import FRAMEWORKS
from harness.chaos import TERMINAL
from harness.scripted_endpoint import ScriptedEndpoint
from harness.webhook_receiver import WebhookReceiver
from tests.support import SENT_EMAIL, TEAM, agent_server_process, team_reply, wait_for_status

USER = "ada@example.com"  # the caller's identity, as the Databricks Apps proxy sends it
SECRET = "whsec_" + base64.b64encode(b"parallel-approvals-key-32-bytes!").decode()


@pytest.fixture(scope="module")
def endpoint():
    with ScriptedEndpoint(team_reply) as scripted:
        yield scripted


@pytest.fixture(scope="module")
def receiver():
    with WebhookReceiver() as hooks:
        yield hooks


class Server:
    """One ``start-server`` of a variant on its own schema, pointed at the scripted endpoint."""

    def __init__(self, variant: str, pg_url: str, tmp: Path, endpoint: ScriptedEndpoint, receiver: WebhookReceiver):
        env = {**endpoint.server_env(tmp), "DATABASE_URL": pg_url,
               "AGENT_SERVER_DB_SCHEMA": f"par_{variant}_{uuid.uuid4().hex[:8]}",
               "WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET}
        self.process = agent_server_process(variant, tmp, env)
        self.process.start(timeout=180)

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.process.base_url, api_key="unused", timeout=120, max_retries=0,
                             default_headers={"X-Forwarded-Email": USER})

    def sent(self, key_prefix: str) -> list[str]:
        """Who ``send_email`` ran for under the response whose id starts its idempotency key."""
        log = self.process.log_path.read_text(errors="replace")
        return [m["to"] for m in SENT_EMAIL.finditer(log) if m["key"].startswith(key_prefix)]

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.process.base_url, timeout=30, headers={"X-Forwarded-Email": USER})

    def approval_status(self, response_id: str) -> dict[str, str]:
        with self.http() as http:
            stored = http.get(f"/responses/{response_id}").json()
        return {r["id"]: r["status"] for r in stored["approval_requests"]}


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def server(request, endpoint, receiver, pg_url, tmp_path_factory, spawns):
    started = Server(request.param, pg_url, tmp_path_factory.mktemp(f"parallel-{request.param}"), endpoint,
                     receiver)
    spawns(started.process)
    yield started
    started.process.kill()


def ask_the_team(client: openai.OpenAI, topic: str):
    """A response whose one model turn called ``send_email`` twice: both calls, both requests."""
    response = client.responses.create(model="agent", input=f"Email the team about {topic}")
    assert response.status == "completed", response
    calls = [item for item in response.output if item.type == "function_call"]
    requests = [item for item in response.output if isinstance(item, McpApprovalRequest)]
    assert [json.loads(c.arguments)["to"] for c in calls] == list(TEAM), response.output
    assert sorted(json.loads(r.arguments)["to"] for r in requests) == list(TEAM), response.output
    assert len({r.id for r in requests}) == 2
    by_address = {json.loads(r.arguments)["to"]: r for r in requests}
    return response, by_address


def answer(client: openai.OpenAI, response_id: str, *answers: tuple[str, bool]):
    return client.responses.create(model="agent", previous_response_id=response_id, input=[
        {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": approve,
         **({} if approve else {"reason": "not this one"})} for request_id, approve in answers])


def test_both_requests_of_one_pause_answered_together(server):
    with server.client() as client:
        response, requests = ask_the_team(client, "launch")
        assert server.sent(f"{response.id}:") == []  # nothing ran while it waited
        answered = answer(client, response.id, (requests[TEAM[0]].id, True), (requests[TEAM[1]].id, False))
    assert answered.status == "completed", answered
    outputs = {item.call_id: item.output for item in answered.output if item.type == "function_call_output"}
    calls = {json.loads(c.arguments)["to"]: c.call_id for c in response.output if c.type == "function_call"}
    assert outputs[calls[TEAM[0]]] == "Email to ada@example.com sent, subject 'launch'."
    assert "not made" in outputs[calls[TEAM[1]]] and "not this one" in outputs[calls[TEAM[1]]]
    # The model was given both results in one turn, and its answer ends the response.
    assert answered.output[-1].type == "message"
    assert answered.output_text == "Summary: " + " | ".join([outputs[calls[TEAM[0]]], outputs[calls[TEAM[1]]]])
    # Only the approved call ran, once, in the answering response.
    assert server.sent(f"{answered.id}:") == [TEAM[0]] and server.sent(f"{response.id}:") == []
    assert server.approval_status(response.id) == {requests[TEAM[0]].id: "approved",
                                                   requests[TEAM[1]].id: "rejected"}


def test_answering_one_request_declines_the_other(server):
    with server.client() as client:
        response, requests = ask_the_team(client, "budget")
        answered = answer(client, response.id, (requests[TEAM[1]].id, True))
        assert answered.status == "completed", answered
        assert server.sent(f"{answered.id}:") == [TEAM[1]]
        assert server.approval_status(response.id) == {requests[TEAM[0]].id: "declined",
                                                       requests[TEAM[1]].id: "approved"}
        # A late answer to the declined one changes nothing and says why.
        with pytest.raises(openai.BadRequestError) as late:
            answer(client, response.id, (requests[TEAM[0]].id, True))
    assert "declined" in str(late.value)
    assert server.sent(f"{response.id}:") == [] and server.sent(f"{answered.id}:") == [TEAM[1]]


def test_a_background_run_that_pauses_tells_the_webhook_receivers(server, receiver):
    with server.client() as client:
        asked = client.responses.create(model="agent", input="Email the team about the offsite", background=True)
        with server.http() as http:
            ended = wait_for_status(http, f"/responses/{asked.id}", TERMINAL, timeout=120)
        assert ended["status"] == "completed", ended
        assert [item["type"] for item in ended["output"][-2:]] == ["mcp_approval_request"] * 2
        receiver.wait_for(lambda deliveries: any(d.response_id == asked.id for d in deliveries), timeout=60)
        (hook,) = receiver.of(asked.id)
        event = client.webhooks.unwrap(hook.body, hook.headers, secret=SECRET)
    assert (event.type, event.data.id) == ("response.completed", asked.id)
