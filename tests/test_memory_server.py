"""Long-term memory through real ``start-server`` processes of both variants (offline model):
the two phrases in two separate chats, identities kept apart through the tools and REST,
limits as a 400 and as a tool result, what deleting a response or every memory keeps, and,
on a server set up as deployed, no memory without a forwarded identity and semantic search
(pgvector, a fake embedding endpoint on 127.0.0.1 reached by the real client)."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest

from agent_server.agents import FRAMEWORKS
from tests.fake_embeddings import FakeEmbeddingEndpoint
from tests.support import FAKE_TOKEN, ServerProcess, agent_server_process, offline_variant_servers

VARIANTS = sorted(FRAMEWORKS)
MAX_CHARS, MAX_PER_IDENTITY = 120, 3
TEAL = "Remember that my favourite colour is teal"
ASK = "What is my favourite colour?"


def identity() -> dict[str, str]:
    """A fresh person (each test its own, so their memories never meet)."""
    return {"X-Forwarded-Email": f"person-{uuid.uuid4().hex[:8]}@example.com"}


@pytest.fixture(scope="module")
def servers(pg_url, tmp_path_factory, spawns) -> dict[str, ServerProcess]:
    with offline_variant_servers(pg_url, tmp_path_factory, "memory", VARIANTS, env={
            "MEMORY_MAX_CHARS": str(MAX_CHARS), "MEMORY_MAX_PER_IDENTITY": str(MAX_PER_IDENTITY)}) as procs:
        yield procs


@pytest.fixture(params=VARIANTS)
def server(request, servers) -> ServerProcess:
    return servers[request.param]


@pytest.fixture
def agent(server) -> openai.OpenAI:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", timeout=60, max_retries=0) as client:
        yield client


@pytest.fixture
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client


def tool_outputs(response, name: str) -> list[str]:
    """The outputs of ``response``'s calls of tool ``name``, in order."""
    calls = {item.call_id for item in response.output if item.type == "function_call" and item.name == name}
    return [item.output for item in response.output if item.type == "function_call_output" and item.call_id in calls]


def finished(agent: openai.OpenAI, response, headers: dict) -> object:
    """Poll a background response until it ends."""
    deadline = time.monotonic() + 60
    while response.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.05)
        response = agent.responses.retrieve(response.id, extra_headers=headers)
    return response


# ----- the two phrases, in two chats -------------------------------------------------------------

def test_remembered_in_one_chat_and_answered_in_another(agent, http):
    me = identity()
    saved = agent.responses.create(model="agent", input=TEAL, extra_headers=me)
    assert saved.status == "completed", saved
    [output] = tool_outputs(saved, "save_memory")
    assert output.startswith("Saved memory mem_") and output.endswith(": my favourite colour is teal")
    assert "I will remember that" in saved.output_text

    # A new chat: no previous_response_id, no conversation, in the background this time.
    asked = finished(agent, agent.responses.create(model="agent", input=ASK, background=True, extra_headers=me), me)
    assert asked.status == "completed", asked
    assert saved.conversation is None and asked.conversation is None  # two chats, no history shared
    [found] = tool_outputs(asked, "search_memories")
    assert found.startswith("1 memory found:") and "my favourite colour is teal" in found
    assert "teal" in asked.output_text

    listed = http.get("/memories", headers=me).json()
    assert [(m["text"], m["response_id"]) for m in listed["data"]] == [("my favourite colour is teal", saved.id)]


# ----- identities apart --------------------------------------------------------------------------

def test_two_identities_never_see_each_others_memories(agent, http):
    alice, bob = identity(), identity()
    agent.responses.create(model="agent", input=TEAL, extra_headers=alice)
    [alices] = http.get("/memories", headers=alice).json()["data"]

    asked = agent.responses.create(model="agent", input=ASK, extra_headers=bob)
    assert tool_outputs(asked, "search_memories") == ["No memories match."] and "teal" not in asked.output_text
    # Bob's model may pass any id to delete_memory: Alice's is not his.
    forget = agent.responses.create(model="agent", input=f'use the delete_memory tool with {{"memory_id": "{alices["id"]}"}}',
                                    extra_headers=bob)
    assert tool_outputs(forget, "delete_memory") == [f"There is no memory {alices['id']} of this user."]

    assert http.get("/memories", headers=bob).json()["data"] == []
    for method in ("GET", "DELETE"):
        answer = http.request(method, f"/memories/{alices['id']}", headers=bob)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "memory_not_found"
    assert http.delete("/memories", headers=bob).json() == {"object": "memories.deleted", "deleted": True, "count": 0}
    assert http.get(f"/memories/{alices['id']}", headers=alice).json()["text"] == "my favourite colour is teal"
    # Without identity headers the caller is the local anonymous identity: someone else again.
    assert alices["id"] not in {m["id"] for m in http.get("/memories").json()["data"]}


# ----- REST: paging and bad input ----------------------------------------------------------------

def test_rest_pages_and_refuses_bad_input_without_changing_anything(servers, sql):
    server = servers["openai"]
    me = identity()
    with httpx.Client(base_url=server.base_url, timeout=60, headers=me) as http:
        made = [http.post("/memories", json={"text": f"fact {n}"}).json() for n in range(MAX_PER_IDENTITY)]
        assert [m["object"] for m in made] == ["memory"] * MAX_PER_IDENTITY and made[0]["response_id"] is None
        first = http.get("/memories", params={"limit": 2}).json()
        assert [m["text"] for m in first["data"]] == ["fact 2", "fact 1"] and first["has_more"] is True
        rest = http.get("/memories", params={"limit": 2, "after": first["last_id"]}).json()
        assert [m["text"] for m in rest["data"]] == ["fact 0"] and rest["has_more"] is False

        refused = {
            "too long": http.post("/memories", json={"text": "x" * (MAX_CHARS + 1)}),
            "over the count": http.post("/memories", json={"text": "one more"}),
            "no text": http.post("/memories", json={"note": "hi"}),
            "not JSON": http.post("/memories", content=b"{nope", headers={"content-type": "application/json"}),
            "bad limit": http.get("/memories", params={"limit": 0}),
            "bad after": http.get("/memories", params={"after": "'; DROP TABLE memories; --"}),
            "unknown after": http.get("/memories", params={"after": "mem_" + "0" * 32}),
        }
        codes = {name: (r.status_code, r.json()["error"]["code"]) for name, r in refused.items()}
        assert codes == {"too long": (400, "memory_too_long"), "over the count": (400, "memory_limit_reached"),
                         "no text": (400, "invalid_memory"), "not JSON": (400, "invalid_json"),
                         "bad limit": (400, "invalid_parameter"), "bad after": (400, "invalid_parameter"),
                         "unknown after": (400, "invalid_parameter")}
        assert f"at most {MAX_CHARS} characters" in refused["too long"].json()["error"]["message"]
        assert refused["too long"].json()["error"]["param"] == "text"
        for odd in ("nope", "mem_" + "g" * 32, "mem_%27%20OR%201=1"):
            assert http.delete(f"/memories/{odd}").status_code == 404
        assert http.delete(f"/memories/{made[0]['id']}").json() == {
            "id": made[0]["id"], "object": "memory.deleted", "deleted": True}
        assert http.delete(f"/memories/{made[0]['id']}").status_code == 404
    owner = f"email:{me['X-Forwarded-Email']}"
    assert sorted(sql(f"SELECT text FROM {server.schema}.memories WHERE owner = %s", (owner,))) == \
        [("fact 1",), ("fact 2",)]


# ----- limits reach the model as a tool result ---------------------------------------------------

def test_limits_reach_the_model_as_a_tool_result(agent, http):
    me = identity()
    too_long = agent.responses.create(model="agent", input="Remember that " + "teal " * 40, extra_headers=me)
    assert too_long.status == "completed"
    [output] = tool_outputs(too_long, "save_memory")
    assert output.startswith(f"Not saved: A memory may be at most {MAX_CHARS} characters")
    for n in range(MAX_PER_IDENTITY):
        assert http.post("/memories", json={"text": f"fact {n}"}, headers=me).status_code == 200
    full = agent.responses.create(model="agent", input=TEAL, extra_headers=me)
    assert full.status == "completed"
    assert tool_outputs(full, "save_memory") == [
        f"Not saved: The limit of {MAX_PER_IDENTITY} memories per person is reached: forget some first "
        "(delete_memory, or DELETE /memories/{id})."]
    assert f"limit of {MAX_PER_IDENTITY} memories" in full.output_text
    assert len(http.get("/memories", headers=me).json()["data"]) == MAX_PER_IDENTITY


# ----- what deleting keeps ----------------------------------------------------------------------

def test_deleting_a_response_keeps_its_memories_and_forgetting_keeps_conversations(agent, http):
    me = identity()
    conversation = agent.conversations.create(extra_headers=me)
    saved = agent.responses.create(model="agent", input=TEAL, conversation=conversation.id, extra_headers=me)
    [memory] = http.get("/memories", headers=me).json()["data"]
    assert memory["response_id"] == saved.id

    assert http.delete(f"/responses/{saved.id}", headers=me).json()["deleted"] is True
    assert http.get(f"/memories/{memory['id']}", headers=me).json() == memory  # still there, naming its response

    later = agent.responses.create(model="agent", input="hello again", conversation=conversation.id, extra_headers=me)
    items_before = http.get(f"/conversations/{conversation.id}/items", headers=me).json()["data"]
    assert http.delete("/memories", headers=me).json()["count"] == 1
    assert http.get("/memories", headers=me).json()["data"] == []
    assert http.get(f"/conversations/{conversation.id}/items", headers=me).json()["data"] == items_before
    assert http.get(f"/responses/{later.id}", headers=me).json()["status"] == "completed"


def test_health_says_which_search_is_active(http):
    memory = http.get("/health").json()["memory"]
    assert memory == {"status": "ready", "search": "full_text", "embedding_endpoint": None,
                      "detail": "full-text search (set DATABRICKS_EMBEDDING_ENDPOINT for semantic search too)",
                      "anonymous_callers": "allowed"}


# ----- deployed: identity required; semantic search ------------------------------------------------

@pytest.fixture(scope="module")
def deployed(pg_url, tmp_path_factory, spawns):
    """An OpenAI-variant server as on Databricks Apps (DATABRICKS_APP_NAME set), with an embedding
    endpoint: the fake one, reached through DATABRICKS_HOST by the real client. The model stays
    the offline one (no LLM_ENDPOINT_NAME)."""
    with FakeEmbeddingEndpoint() as fake:
        log_dir = tmp_path_factory.mktemp("memory-deployed")
        proc = agent_server_process("openai", log_dir, {
            "DATABRICKS_APP_NAME": "memory-test-app",
            "DATABRICKS_HOST": fake.host, "DATABRICKS_TOKEN": FAKE_TOKEN,
            "DATABRICKS_CONFIG_FILE": str(log_dir / "no-databrickscfg"),
            "DATABRICKS_CONFIG_PROFILE": "", "DATABRICKS_AUTH_TYPE": "",
            "DATABRICKS_CLIENT_ID": "", "DATABRICKS_CLIENT_SECRET": "",
            "DATABRICKS_EMBEDDING_ENDPOINT": "fake-embed",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "LLM_ENDPOINT_NAME": "", "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0.002",
            "DATABASE_URL": pg_url, "AGENT_SERVER_DB_SCHEMA": f"memory_deployed_{uuid.uuid4().hex[:8]}",
        })
        proc.launch().wait_until_healthy(180, database=True)
        proc.fake, proc.schema = fake, proc.env["AGENT_SERVER_DB_SCHEMA"]
        try:
            yield proc
        finally:
            proc.kill()


def test_deployed_a_request_without_identity_gets_no_memory(deployed, sql):
    with openai.OpenAI(base_url=deployed.base_url, api_key="unused", timeout=60, max_retries=0) as agent:
        nobody = agent.responses.create(model="agent", input=TEAL)
        assert nobody.status == "completed"
        [output] = tool_outputs(nobody, "save_memory")
        assert output.startswith("Not saved: Memory needs a signed-in user")
        asked = agent.responses.create(model="agent", input=ASK)
        assert tool_outputs(asked, "search_memories")[0].startswith("Memory is unavailable: Memory needs")
    assert sql(f"SELECT count(*) FROM {deployed.schema}.memories WHERE owner = ''") == [(0,)]
    with httpx.Client(base_url=deployed.base_url, timeout=60) as http:
        for method, path in [("GET", "/memories"), ("POST", "/memories"), ("DELETE", "/memories"),
                             ("DELETE", "/memories/mem_" + "0" * 32)]:
            answer = http.request(method, path, json={"text": "x"} if method == "POST" else None)
            assert answer.status_code == 403 and answer.json()["error"]["code"] == "memory_needs_identity", path
        assert http.get("/memories", headers=identity()).status_code == 200
        assert http.get("/health").json()["memory"]["anonymous_callers"] == "refused"


def test_deployed_semantic_search_finds_a_paraphrase(deployed):
    me = identity()
    with openai.OpenAI(base_url=deployed.base_url, api_key="unused", timeout=60, max_retries=0) as agent:
        for fact in (TEAL, "Remember that my favourite food is pizza", "Remember that I live in Lisbon"):
            assert agent.responses.create(model="agent", input=fact, extra_headers=me).status == "completed"
        # No word in common with the memory: full text alone would find nothing.
        asked = agent.responses.create(model="agent", input="Do you remember which hue I like best?",
                                       extra_headers=me)
    [found] = tool_outputs(asked, "search_memories")
    assert found.splitlines()[1].startswith("- my favourite colour is teal"), found
    assert "teal" in asked.output_text
    with httpx.Client(base_url=deployed.base_url, timeout=60) as http:
        memory = http.get("/health").json()["memory"]
    assert (memory["search"], memory["embedding_endpoint"]) == ("semantic", "fake-embed")
    sent = deployed.fake.embedding_requests()
    assert sent and all(r["authorization"] == f"Bearer {FAKE_TOKEN}" and r["body"]["model"] == "fake-embed"
                        for r in sent)
    assert "Long-term memory: semantic search (embedding endpoint fake-embed, pgvector)" in deployed.log_tail(100_000)


def test_without_a_database_memory_says_so_and_the_run_still_answers(tmp_path, spawns):
    """The database unreachable: a standard request runs unstored; its memory tools say why
    they cannot help, and /memories answers 503 (never a 500)."""
    proc = agent_server_process("langgraph", tmp_path, {
        "DATABASE_URL": f"postgresql://nobody@/nothing?host={tmp_path}/no-such-socket",
        "LLM_ENDPOINT_NAME": "", "OFFLINE_MODEL_TOKEN_DELAY_SECONDS": "0.002"})
    try:
        proc.start(timeout=180)
        with openai.OpenAI(base_url=proc.base_url, api_key="unused", timeout=60, max_retries=0) as agent:
            answer = agent.responses.create(model="agent", input=TEAL)
        assert answer.status == "completed"
        [output] = tool_outputs(answer, "save_memory")
        assert output.startswith("Not saved: no database (")
        with httpx.Client(base_url=proc.base_url, timeout=60) as http:
            listed = http.get("/memories")
            assert listed.status_code == 503 and listed.json()["error"]["code"] == "background_unavailable"
            assert http.get("/health").json()["memory"] == {"status": "unavailable", "anonymous_callers": "allowed"}
    finally:
        proc.kill()
