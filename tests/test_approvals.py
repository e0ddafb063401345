"""Human approval for consequential tools, in both variants, through the official ``openai`` client.

Real ``start-server`` processes (offline model) share one schema per
variant: ``first`` (default settings) and ``second`` (approval requests
expire after a few seconds; two tasks at most), so a request asked on one is
answered on the other, and the first is killed and restarted between a
request and its answer. The demo tool ``send_email`` needs approval; it logs
each time it runs.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
import uuid

import httpx
import openai
import pytest
from openai.types.responses.response_input_item import McpApprovalResponse
from openai.types.responses.response_output_item import McpApprovalRequest

from agent_server.agents import FRAMEWORKS
from agent_server.long_running.http.approval_answers import answers_in
from agent_server.long_running.errors import ApiError
from tests.support import SENT_EMAIL, agent_server_process

VARIANTS = sorted(FRAMEWORKS)
EXPIRES_AFTER = 4.0  # the second server's approval time-out, in seconds


class Servers:
    """``first`` and ``second`` on one schema; ``restart_first()`` kills and starts the first anew."""

    def __init__(self, variant: str, pg_url: str, tmp) -> None:
        self.variant = variant
        self.tmp = tmp
        self.env = {"DATABASE_URL": pg_url, "AGENT_SERVER_DB_SCHEMA": f"appr_{variant}_{uuid.uuid4().hex[:8]}",
                    "LLM_ENDPOINT_NAME": "", "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0"}
        self.first = self._start("first", {})
        self.second = self._start("second", {"APPROVAL_TIMEOUT_SECONDS": str(EXPIRES_AFTER),
                                             "MAX_CONCURRENT_TASKS": "2"})

    def _start(self, name: str, env: dict[str, str]):
        log_dir = self.tmp / name
        log_dir.mkdir(exist_ok=True)
        proc = agent_server_process(self.variant, log_dir, {**self.env, **env})
        proc.start(timeout=180)
        return proc

    def restart_first(self) -> None:
        self.first.kill()
        self.first = self._start("first", {})

    def client(self, server, user: str = "ada@example.com") -> openai.OpenAI:
        return openai.OpenAI(base_url=server.base_url, api_key="unused", timeout=60, max_retries=0,
                             default_headers={"X-Forwarded-Email": user})

    def sent(self, key_prefix: str) -> list[str]:
        """The idempotency keys of every send_email run of one response, in both servers' logs."""
        log = "".join(path.read_text(errors="replace") for path in self.tmp.glob("*/server.log"))
        return [m["key"] for m in SENT_EMAIL.finditer(log) if m["key"].startswith(key_prefix)]

    def close(self) -> None:
        self.first.kill()
        self.second.kill()


@pytest.fixture(scope="module", params=VARIANTS)
def servers(request, pg_url, tmp_path_factory):
    pair = Servers(request.param, pg_url, tmp_path_factory.mktemp(f"approvals-{request.param}"))
    yield pair
    pair.close()


def ask(client: openai.OpenAI, text: str = "Email ada@example.com about the launch"):
    """A response whose run pauses for approval; its request item."""
    response = client.responses.create(model="agent", input=text)
    assert response.status == "completed", response
    call, request = response.output
    assert call.type == "function_call" and call.name == "send_email"
    assert isinstance(request, McpApprovalRequest)
    return response, request


def answer(client: openai.OpenAI, response_id: str, request_id: str, approve: bool, reason: str | None = None,
           **kwargs):
    item = {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": approve}
    if reason is not None:
        item["reason"] = reason
    return client.responses.create(model="agent", previous_response_id=response_id, input=[item], **kwargs)


def raw(server, method: str, path: str, user: str = "ada@example.com", **kwargs) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=60, headers={"X-Forwarded-Email": user}) as http:
        return http.request(method, path, **kwargs)


def approval_status(server, response_id: str) -> list[dict]:
    return raw(server, "GET", f"/responses/{response_id}").json()["approval_requests"]


# ----- the wire ----------------------------------------------------------------------------

def test_the_request_and_answer_items_parse_strictly_as_the_openai_types(servers):
    with servers.client(servers.first) as client:
        response, request = ask(client)
    stored = raw(servers.first, "GET", f"/responses/{response.id}").json()["output"][-1]
    assert McpApprovalRequest.model_validate(stored, strict=True).model_dump(exclude_none=True) == stored
    assert stored == {"type": "mcp_approval_request", "id": request.id, "name": "send_email",
                      "arguments": stored["arguments"], "server_label": "agent"}
    assert re.fullmatch(r"mcpr_[0-9a-f]{32}", request.id)
    assert json.loads(request.arguments) == {"to": "ada@example.com", "subject": "The launch",
                                             "body": "Hello, a note about the launch."}
    sent = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": False,
            "reason": "not yet"}
    McpApprovalResponse.model_validate(sent, strict=True)
    (parsed,) = answers_in({"input": [sent]}, response.id, True)
    assert (parsed.request_id, parsed.approve, parsed.reason) == (request.id, False, "not yet")


@pytest.mark.parametrize("body, message", [
    ({"input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_x", "approve": "yes"}]},
     "approve must be true or false"),
    ({"input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_x", "approve": True},
                {"role": "user", "content": "and also"}]}, "only mcp_approval_response items"),
])
def test_malformed_answers_are_refused(body, message):
    with pytest.raises(ApiError) as refused:
        answers_in(body, "resp_" + "0" * 32, True)
    assert refused.value.status == 400 and message in str(refused.value)


# ----- approve, reject ----------------------------------------------------------------------

def test_approved_the_tool_runs_once_and_the_agent_goes_on(servers):
    with servers.client(servers.first) as client:
        response, request = ask(client)
        assert servers.sent(f"{response.id}:") == []  # nothing ran while it waited
        answered = answer(client, response.id, request.id, True)
    assert answered.status == "completed"
    output, message = answered.output
    assert output.type == "function_call_output" and output.call_id == response.output[0].call_id
    assert output.output == "Email to ada@example.com sent, subject 'The launch'."
    assert message.content[0].text == f"Done: {output.output}"
    # It ran once, in the answering response (its key names that response).
    assert len(servers.sent(f"{answered.id}:")) == 1 and servers.sent(f"{response.id}:") == []
    assert approval_status(servers.first, response.id) == [
        {"id": request.id, "status": "approved", "expires_at": pytest.approx(time.time() + 7 * 86400, abs=120),
         "answered_by": answered.id}]


def test_rejected_the_tool_does_not_run_and_the_agent_is_told_why(servers):
    with servers.client(servers.first) as client:
        response, request = ask(client)
        answered = answer(client, response.id, request.id, False, reason="not before Friday")
    output, message = answered.output
    assert output.output == "This call was not made: the user rejected it (not before Friday)."
    assert message.content[0].text == f"I did not send the email. {output.output}"
    assert servers.sent(f"{answered.id}:") == []
    assert approval_status(servers.first, response.id)[0]["status"] == "rejected"


# ----- who may answer, and when ----------------------------------------------------------------

def test_only_the_owner_can_answer_anyone_else_gets_the_unknown_id_answer(servers):
    with servers.client(servers.first) as client:
        response, request = ask(client)
    item = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
    foreign = raw(servers.first, "POST", "/responses", user="mallory@example.com",
                  json={"previous_response_id": response.id, "input": [item]})
    unknown_id = "resp_" + uuid.uuid4().hex
    unknown = raw(servers.first, "POST", "/responses", user="mallory@example.com",
                  json={"previous_response_id": unknown_id, "input": [item]})
    assert foreign.status_code == unknown.status_code == 400
    assert foreign.json()["error"] == {**unknown.json()["error"],
                                       "message": unknown.json()["error"]["message"].replace(unknown_id, response.id)}
    assert approval_status(servers.first, response.id)[0]["status"] == "pending"  # nothing changed


def test_an_unknown_or_answered_request_gets_a_400_naming_it(servers):
    with servers.client(servers.first) as client:
        response, request = ask(client)
        other, other_request = ask(client)
        for request_id, why in (("mcpr_" + "0" * 32, "no such approval request"),
                                (other_request.id, f"it was asked by response {other.id}")):
            with pytest.raises(openai.BadRequestError) as refused:
                answer(client, response.id, request_id, True)
            assert request_id in refused.value.message and why in refused.value.message
        answer(client, response.id, request.id, True)
        with pytest.raises(openai.BadRequestError) as again:
            answer(client, response.id, request.id, False)
    assert "already answered (approved)" in again.value.message and request.id in again.value.message
    assert approval_status(servers.first, other.id)[0]["status"] == "pending"


def test_two_answers_racing_exactly_one_wins(servers):
    with servers.client(servers.first) as client:
        response, request = ask(client)

    def send(server):
        with servers.client(server) as racer:
            try:
                return answer(racer, response.id, request.id, True, background=True).id
            except openai.BadRequestError as refused:
                return refused

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(send, [servers.first, servers.second]))
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1, results
    assert "already answered" in next(r for r in results if not isinstance(r, str)).message
    assert approval_status(servers.first, response.id)[0]["answered_by"] == winners[0]


def test_an_expired_request_cannot_be_answered_and_the_response_says_so(servers):
    with servers.client(servers.second) as client:  # its requests expire after a few seconds
        response, request = ask(client)
        time.sleep(EXPIRES_AFTER + 0.5)
        with pytest.raises(openai.BadRequestError) as refused:
            answer(client, response.id, request.id, True)
    assert refused.value.code == "approval_expired" and request.id in refused.value.message
    assert "expired" in refused.value.message
    assert approval_status(servers.second, response.id)[0]["status"] == "expired"
    assert servers.sent(f"{response.id}:") == []


def test_a_new_message_declines_what_waits(servers):
    with servers.client(servers.first) as client:
        response, request = ask(client)
        moved_on = client.responses.create(model="agent", previous_response_id=response.id, input="What time is it?")
        assert moved_on.status == "completed" and moved_on.output[0].name == "get_current_time"
        assert approval_status(servers.first, response.id)[0] == {**approval_status(servers.first, response.id)[0],
                                                                   "status": "declined", "answered_by": moved_on.id}
        with pytest.raises(openai.BadRequestError) as late:
            answer(client, response.id, request.id, True)
    assert "already answered (declined)" in late.value.message


def test_the_list_shows_what_waits_for_an_answer(servers):
    with servers.client(servers.first) as client:
        waiting, request = ask(client)
        done = client.responses.create(model="agent", input="What time is it?")
        listed = raw(servers.first, "GET", "/responses", params={"waiting": "approval", "limit": 100}).json()["data"]
        assert waiting.id in [r["id"] for r in listed] and done.id not in [r["id"] for r in listed]
        assert next(r for r in listed if r["id"] == waiting.id)["pending_approvals"] == 1
        answer(client, waiting.id, request.id, True)
    listed = raw(servers.first, "GET", "/responses", params={"waiting": "approval", "limit": 100}).json()["data"]
    assert waiting.id not in [r["id"] for r in listed]
    assert raw(servers.first, "GET", "/responses", params={"waiting": "yes"}).status_code == 400


def test_an_unstored_run_cannot_wait_so_the_tool_does_not_run(servers):
    with servers.client(servers.first) as client:
        response = client.responses.create(model="agent", input="Email unstored@example.com about the launch",
                                           store=False)
    assert "needs a person's approval, which only a stored response can wait for" in response.output_text
    assert not any(item.type == "mcp_approval_request" for item in response.output)
    log = "".join(path.read_text(errors="replace") for path in servers.tmp.glob("*/server.log"))
    assert "send_email to unstored@example.com" not in log


# ----- nothing is held while waiting ------------------------------------------------------------

def test_a_second_worker_answers(servers):
    with servers.client(servers.first) as first, servers.client(servers.second) as second:
        response, request = ask(first)
        answered = answer(second, response.id, request.id, True)
    assert answered.output[0].output.startswith("Email to ada@example.com sent")
    assert len(servers.sent(f"{answered.id}:")) == 1


def test_a_restart_between_request_and_answer_changes_nothing(servers):
    with servers.client(servers.first) as client:
        response, request = ask(client)
    servers.restart_first()
    with servers.client(servers.first) as client:
        answered = answer(client, response.id, request.id, True)
    assert answered.status == "completed" and answered.output[1].content[0].text.startswith("Done: Email to")


def test_waiting_approvals_hold_no_slot(servers):
    # The second server runs two tasks at most: two runs waiting for approval hold none of them.
    with servers.client(servers.second) as client:
        for _ in range(2):
            ask(client)
        started = client.responses.create(model="agent", input="Research kelp for 0.5 seconds", background=True)
    assert started.status == "in_progress"  # started at once, not queued


# ----- a paused graph's checkpoints stay while an answer may come --------------------------------

def test_a_paused_threads_checkpoints_stay_until_its_answer_has_run(pg_url, db_schema, sql):
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    from agent_server.long_running.storage.models import ApprovalAnswer, Status
    from tests.support import new_response_id, run_async, store_with_response

    def status(rid: str, value: str) -> None:
        sql(f"UPDATE {db_schema}.responses SET status = %s WHERE response_id = %s", (value, rid))

    def threads() -> list[str]:
        return [thread for (thread,) in sql(f"SELECT thread_id FROM {db_schema}.checkpoints")]

    async def scenario():
        async with store_with_response(pg_url, db_schema) as (store, paused):
            await store.set_up_once("langgraph-checkpointer", AsyncPostgresSaver(store.db.pool).setup)
            sql(f"INSERT INTO {db_schema}.checkpoints (thread_id, checkpoint_id, checkpoint) VALUES (%s, '1', '{{}}')",
                (paused,))
            await store.ask_approval(paused, "mcpr_" + "1" * 32, name="send_email", arguments="{}",
                                     server_label="agent", call_id="call_1", state="{}", thread_id=paused,
                                     timeout_seconds=60)
            status(paused, "completed")
            await store.delete_ended_checkpoints()
            kept_while_pending = threads()
            answering = new_response_id()
            conversation = (await store.create_conversation("conv_" + uuid.uuid4().hex, "")).conversation_id
            await store.insert_turn(conversation_id=conversation, decide=lambda unfinished: Status.IN_PROGRESS,
                                    created_event=lambda s: json.dumps({"type": "response.created"}),
                                    answers=[ApprovalAnswer("mcpr_" + "1" * 32, True)], asked_by=paused,
                                    response_id=answering, owner="", worker_id="w", created_at=time.time(),
                                    request={"input": []}, request_headers={}, model="m")
            await store.delete_ended_checkpoints()
            kept_while_answering = threads()
            status(answering, "completed")
            await store.delete_ended_checkpoints()
            return paused, kept_while_pending, kept_while_answering, threads()

    paused, pending, answering, after = run_async(scenario())
    assert pending == [paused] and answering == [paused] and after == []
