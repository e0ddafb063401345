"""Bad input and security: malformed requests on every endpoint, fuzzed request
bodies, identity isolation, no request value in SQL text, no debug endpoints.

Complements tests/test_bad_input.py (which covers the common malformed bodies
and parameters) without repeating its cases. Sizes: ~60 table cases, 100
hypothesis bodies and 60 hypothesis ids/cursors against the shared server.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_server.long_running.storage.queries import Queries, _raw_queries
from agent_server.long_running.settings import EngineSettings
from harness import chaos
from tests.support import stream_frames, wait_for_status

ENGINE = Path(__file__).resolve().parents[1] / "agent_server" / "long_running"
RID = "resp_" + "b" * 32
TERMINAL = chaos.TERMINAL


def _counts(sql, schema):
    return sql(f"SELECT (SELECT count(*) FROM {schema}.responses), (SELECT count(*) FROM {schema}.events)")


def _is_openai_error(response: httpx.Response) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return set(error) == {"message", "type", "code", "param"} and bool(error["message"])


# ----- table-driven malformed requests ---------------------------------------------------

_JSON = {"content-type": "application/json"}
_GOOD = {"input": "hi", "background": True}

CASES = [
    # Unsupported methods on every path.
    ("PATCH", "/responses", {}, 405, None),
    # The list of one's responses (GET /responses): hostile parameters.
    *[("GET", "/responses", {"params": params}, 400, "invalid_parameter")
      for params in ({"limit": "9" * 5000}, {"limit": "-1"}, {"status": "'; DROP TABLE responses; --"},
                     {"after": "resp_" + "a" * 31 + "%00"}, {"after": "%27%20OR%20%271%27%3D%271"})],
    ("PUT", "/responses", {"json": _GOOD}, 405, None),
    ("DELETE", "/responses", {}, 405, None),
    ("GET", "/invocations", {}, 405, None),
    ("PUT", "/invocations", {"json": _GOOD}, 405, None),
    ("POST", f"/responses/{RID}", {"json": _GOOD}, 405, None),
    ("PATCH", f"/responses/{RID}", {"json": {}}, 405, None),
    ("GET", f"/responses/{RID}/cancel", {}, 405, None),
    ("PUT", f"/responses/{RID}/cancel", {}, 405, None),
    ("DELETE", f"/responses/{RID}/cancel", {}, 405, None),
    ("POST", "/health", {}, 405, None),
    ("DELETE", "/health", {}, 405, None),
    ("POST", "/agent/info", {}, 405, None),
    # Bodies: empty, JSON scalars, hostile structure and strings.
    ("POST", "/responses", {"content": b"", "headers": _JSON}, 400, "invalid_json"),
    ("POST", "/responses", {"content": b"null", "headers": _JSON}, 400, "invalid_json"),
    ("POST", "/responses", {"content": b"true", "headers": _JSON}, 400, "invalid_json"),
    ("POST", "/responses", {"content": b'"a string"', "headers": _JSON}, 400, "invalid_json"),
    ("POST", "/responses", {"content": b"[" * 100_000 + b"]" * 100_000, "headers": _JSON}, 400, "invalid_json"),
    ("POST", "/responses", {"content": b'{"input": ' + b"[" * 50_000 + b"]" * 50_000 + b', "background": true}',
                            "headers": _JSON}, 400, None),
    ("POST", "/responses", {"content": b'{"input": "\\ud800", "background": true}', "headers": _JSON},
     400, "invalid_request"),
    ("POST", "/responses", {"content": b'{"input": "nul \\u0000 byte", "background": true}', "headers": _JSON},
     400, None),
    ("POST", "/responses", {"content": b'{"input": "hi", "background": true, "custom_inputs": {"k\\u0000": 1}}',
                            "headers": _JSON}, 400, None),
    ("POST", "/responses", {"content": b'{"input": "hi", "background": true, "x": NaN}', "headers": _JSON},
     400, "invalid_json"),
    ("POST", "/responses", {"content": b'{"input": "hi", "background": true, "custom_inputs": {"x": -Infinity}}',
                            "headers": _JSON}, 400, "invalid_json"),
    ("POST", "/responses", {"content": b'{"input": "hi", "background": true,', "headers": _JSON}, 400, "invalid_json"),
    ("POST", "/responses", {"content": b"\xef\xbb\xbf{}", "headers": _JSON}, 400, None),
    ("POST", "/responses", {"json": {"input": [1, 2, 3], "background": True}}, 400, "invalid_request"),
    ("POST", "/responses", {"json": {"input": [{"role": "user", "content": {"nested": True}}], "background": True}},
     400, "invalid_request"),
    ("POST", "/responses", {"json": {"input": "hi", "background": True, "context": "not an object"}},
     400, "invalid_request"),
    ("POST", "/responses", {"json": {"input": "hi", "background": [True]}}, 400, "invalid_parameter"),
    ("POST", "/responses", {"json": {"input": "hi", "background": {"$ne": None}}}, 400, "invalid_parameter"),
    ("POST", "/responses", {"json": {"input": "hi", "background": "'; DROP TABLE responses; --"}},
     400, "invalid_parameter"),
    ("POST", "/invocations", {"json": {"input": None, "background": True}}, 400, "invalid_request"),
    # A huge body sent without a Content-Length (chunked) is cut off at the limit too.
    ("POST", "/responses", {"content": iter([b'{"input": "', b"x" * (6 * 1024 * 1024), b"x" * (6 * 1024 * 1024),
                                             b'"}']), "headers": _JSON}, 413, "body_too_large"),
    # Malformed ids on every id endpoint: unknown, as OpenAI answers, without a database look-up.
    *[(method, path.format(rid=bad), {}, 404, "response_not_found")
      for bad in ("resp_" + "B" * 32, "resp_" + "a" * 31, "resp_" + "a" * 33, "resp_" + "g" * 32,
                  "resp_" + "a" * 5000, "RESP_" + "a" * 32, "resp_%C3%A9" + "a" * 31, "resp_" + "a" * 31 + "%00",
                  "%27%20OR%20%271%27%3D%271")
      for method, path in (("GET", "/responses/{rid}"), ("POST", "/responses/{rid}/cancel"),
                           ("DELETE", "/responses/{rid}"))],
    ("GET", "/responses/resp_" + "a" * 31 + "%0A", {"params": {"stream": "true"}}, 404, "response_not_found"),
    # An encoded slash makes another path, which no route matches.
    *[(method, "/responses/resp_..%2F..%2Fetc", {}, 404, None) for method in ("GET", "DELETE")],
    # Cursors: huge, signed, non-decimal, padded, empty.
    *[("GET", f"/responses/{RID}", {"params": {"stream": "true", "starting_after": bad}}, 400, "invalid_parameter")
      for bad in ("9" * 5000, "2147483648", "+1", "-0", "0x10", "1e3", " 1", "1 ", "", "NaN", "1;2", "٣")],
    ("GET", f"/responses/{RID}", {"params": {"stream": "yes"}}, 400, "invalid_parameter"),
    ("GET", f"/responses/{RID}", {"params": {"stream": "t" * 10_000}}, 400, "invalid_parameter"),
]


@pytest.mark.parametrize("method,path,kwargs,status,code", CASES,
                         ids=[f"{i}-{c[0]}-{c[1][:40]}-{c[3]}" for i, c in enumerate(CASES)])
def test_malformed_request_is_a_clear_4xx_and_changes_nothing(client, sql, shared_schema, method, path, kwargs,
                                                               status, code):
    before = _counts(sql, shared_schema)
    response = client.request(method, path, **kwargs)
    chaos.record("bad_input_table", chaos.Figures(bad_inputs=1, five_xx=int(response.status_code >= 500)))
    assert response.status_code == status, response.text[:500]
    assert _is_openai_error(response), response.text[:500]
    assert len(response.json()["error"]["message"]) < 3000
    if code:
        assert response.json()["error"]["code"] == code
    assert _counts(sql, shared_schema) == before


# ----- property-based fuzzing -----------------------------------------------------------

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
_JSON_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
# Keys the chaos agent acts on (record writes a file, deltas/pause/hold set the run's length) are left out:
# the fuzzer probes the server's parsing and storage, not how long the agent can be asked to run.
_AGENT_KEYS = {"deltas", "pause", "hold", "hold_at", "record", "fail_after", "tool_at", "tool_seconds",
               "echo_headers", "tag"}
_CUSTOM = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in _AGENT_KEYS), _JSON_VALUES, max_size=4)
_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "x"])
                                  | st.text(max_size=8),
                                  "content": st.text(max_size=60) | _JSON_VALUES})
_INPUT = st.text(max_size=80) | st.lists(_MESSAGE | _JSON_VALUES, max_size=3) | _JSON_VALUES
_BODIES = st.fixed_dictionaries(
    {},
    optional={"input": _INPUT, "background": st.just(True) | _SCALARS, "stream": st.just(False) | _SCALARS,
              "custom_inputs": _CUSTOM | _JSON_VALUES, "context": st.dictionaries(
                  st.sampled_from(["conversation_id", "user_id", "x"]), _JSON_VALUES, max_size=2) | _JSON_VALUES,
              "model": _SCALARS, "temperature": _SCALARS, "metadata": _JSON_VALUES},
) | _JSON_VALUES


def test_fuzzed_bodies_never_5xx_and_store_only_accepted_runs(shared_server, sql, shared_schema):
    owner = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
    headers = {"X-Forwarded-Email": owner}
    accepted: list[str] = []
    statuses: dict[int, int] = {}

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_BODIES)
    def probe(body):
        with httpx.Client(base_url=shared_server.base_url, timeout=30) as client:
            response = client.post("/responses", content=json.dumps(body), headers={**headers, **_JSON})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (body, response.text[:500])
        if response.status_code >= 400:
            assert _is_openai_error(response), response.text[:300]
        elif isinstance(body, dict) and body.get("background") in (True, "true", "1", "True"):
            if "text/event-stream" in response.headers.get("content-type", ""):
                accepted.append(json.loads(response.text.split("data: ", 1)[1].split("\n", 1)[0])["response"]["id"])
            else:
                accepted.append(response.json()["id"])

    try:
        probe()
    finally:
        chaos.record("fuzz_bodies", chaos.Figures(bad_inputs=sum(statuses.values()),
                                                  five_xx=sum(n for s, n in statuses.items() if s >= 500)))
    # Rows exist only for the requests that were accepted as background runs, and each is well formed.
    stored = sql(f"SELECT response_id, jsonb_typeof(request->'input') FROM {shared_schema}.responses "
                 "WHERE owner = %s", (owner,))
    assert sorted(r for r, _ in stored) == sorted(accepted)
    assert {kind for _, kind in stored} <= {"array"}
    with httpx.Client(base_url=shared_server.base_url, timeout=30, headers=headers) as client:
        for rid in accepted:
            assert wait_for_status(client, f"/responses/{rid}", TERMINAL, timeout=60)["status"] in TERMINAL


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(rid=st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/?#"),
                   min_size=1, max_size=60).filter(lambda s: s not in (".", "..")),
       cursor=st.none() | st.text(max_size=12), stream=st.none() | st.text(max_size=6))
def test_fuzzed_ids_and_cursors_never_5xx(shared_server, rid, cursor, stream):
    params = {k: v for k, v in (("starting_after", cursor), ("stream", stream)) if v is not None}
    with httpx.Client(base_url=shared_server.base_url, timeout=30) as client:
        answers = [client.get(f"/responses/{rid}", params=params),
                   client.post(f"/responses/{rid}/cancel"), client.delete(f"/responses/{rid}")]
    chaos.record("fuzz_ids", chaos.Figures(bad_inputs=len(answers),
                                           five_xx=sum(a.status_code >= 500 for a in answers)))
    for answer in answers:
        assert answer.status_code in (400, 404, 405), (rid, params, answer.status_code, answer.text[:300])
        assert _is_openai_error(answer)


# ----- identity isolation ------------------------------------------------------------------

IDENTITIES = {
    "alice": {"X-Forwarded-Email": "alice@example.com"},
    "bob": {"X-Forwarded-Email": "bob@example.com"},
    # ALICE@example.com is Alice: emails compare case-insensitively (tests/test_request_edges.py).
    "alice-other-domain": {"X-Forwarded-Email": "alice@example.org"},
    "carol-user-only": {"X-Forwarded-User": "carol"},
    # A user header equal to Alice's email is not Alice (identities are namespaced).
    "user-named-like-alice": {"X-Forwarded-User": "alice@example.com"},
    "anonymous": {},
}


def test_identity_isolation_matrix(client, sql, shared_schema):
    runs = {}
    for name, headers in IDENTITIES.items():
        response = client.post("/responses", headers=headers, json={
            "input": "hi", "background": True, "custom_inputs": {"deltas": 200, "pause": 0.05}})
        runs[name] = response.json()["id"]
    tried = 0
    for owner, rid in runs.items():
        for caller, headers in IDENTITIES.items():
            if caller == owner:
                continue
            answers = [client.get(f"/responses/{rid}", headers=headers),
                       client.get(f"/responses/{rid}", params={"stream": "true"}, headers=headers),
                       client.get(f"/responses/{rid}", params={"stream": "true", "starting_after": "0"},
                                  headers=headers),
                       client.post(f"/responses/{rid}/cancel", headers=headers),
                       client.delete(f"/responses/{rid}", headers=headers)]
            tried += len(answers)
            for answer in answers:
                # Exactly what an id that does not exist answers: nothing reveals that it does.
                assert answer.status_code == 404, (owner, caller, answer.text)
                assert answer.json()["error"]["code"] == "response_not_found"
                assert answer.json()["error"]["message"] == f"No response with id '{rid}' found."
    chaos.record("identity_matrix", chaos.Figures(bad_inputs=tried))
    # None of that touched anything: every run still runs, and its owner can read and end it.
    for owner, rid in runs.items():
        headers = IDENTITIES[owner]
        assert client.get(f"/responses/{rid}", headers=headers).json()["status"] == "in_progress", owner
        assert client.post(f"/responses/{rid}/cancel", headers=headers).json()["status"] == "cancelled"
        frames = stream_frames(client, "GET", f"/responses/{rid}", params={"stream": "true"}, headers=headers)
        assert frames[-2]["type"] == "response.cancelled"
        assert client.delete(f"/responses/{rid}", headers=headers).status_code == 200
    assert sql(f"SELECT count(*) FROM {shared_schema}.responses WHERE response_id = ANY(%s)",
               (list(runs.values()),)) == [(0,)]


def test_hostile_identity_and_header_values_are_stored_verbatim(client, sql, shared_schema):
    """Quote characters and SQL in identity headers are data: stored as sent, matched exactly."""
    email = "o'brien\"); DROP TABLE responses; --@example.com"
    headers = {"X-Forwarded-Email": email, "X-Request-Id": "'; SELECT pg_sleep(10); --"}
    rid = client.post("/responses", headers=headers, json={"input": "hi", "background": True,
                                                            "custom_inputs": {"deltas": 1}}).json()["id"]
    assert wait_for_status(client, f"/responses/{rid}", TERMINAL, headers=headers)["status"] == "completed"
    [(owner, request_id)] = sql(f"SELECT owner, request_headers->>'x-request-id' FROM {shared_schema}.responses "
                                "WHERE response_id = %s", (rid,))
    # As sent, only lowercased: emails compare case-insensitively.
    assert owner == f"email:{email.lower()}" and request_id == headers["X-Request-Id"]
    assert client.get(f"/responses/{rid}", headers={"X-Forwarded-Email": "o'brien"}).status_code == 404


# ----- no request value in SQL text ---------------------------------------------------------

_SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|LISTEN|NOTIFY|GRANT|TRUNCATE|SET|WITH)\b")
_SQL_LATER = re.compile(r"\b(FROM|WHERE|SET|INTO|VALUES|TABLE|SCHEMA|RETURNING)\b")
#: The only SQL text built in Python, and why each is safe: both are formatted from validated configuration.
_ALLOWED_SQL = {
    ("database.py", 'LISTEN "{channel}"'),  # channel = validated schema name + "_events"/"_control"
    ("database.py", "SET statement_timeout = {timeout_ms}"),  # int(settings.db_statement_timeout_ms)
}


def _python_sql_strings():
    for path in sorted(ENGINE.glob("*.py")):
        tree = ast.parse(path.read_text())
        skip = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and node.body and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)}  # docstrings
        skip |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                               for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                text = node.value
            else:
                continue
            if _looks_like_sql(text):
                yield path.name, text


def _looks_like_sql(text: str) -> bool:
    """Starts with an SQL keyword and goes on like SQL (a quoted or snake_case identifier, or a second
    keyword); a log message such as "LISTEN connection lost (%s)" goes on like a sentence."""
    start = _SQL_START.match(text)
    if not start:
        return False
    rest = text[start.end():].strip()
    return bool(_SQL_LATER.search(rest) or re.match(r'^("|\w*_\w*|\*|\d|\{)', rest))


def test_no_sql_is_built_from_request_values():
    found = set(_python_sql_strings())
    assert found <= _ALLOWED_SQL, found - _ALLOWED_SQL
    # Every statement is named SQL from sql/*.sql; its only format field is the schema, every value a
    # bound %(name)s parameter.
    for name, statement in _raw_queries().items():
        fields = set(re.findall(r"(?<!\{)\{(\w*)\}(?!\})", statement))
        assert fields <= {"schema"}, (name, fields)
    for path in (ENGINE / "sql" / "migrations").glob("*.sql"):
        assert set(re.findall(r"(?<!\{)\{(\w*)\}(?!\})", path.read_text())) <= {"schema"}, path


def test_every_execute_call_runs_named_sql():
    """``execute(...)`` in the engine only ever gets a named query object, or the allow-listed strings."""
    for path in sorted(ENGINE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            first = node.args[0] if node.args else None
            named = isinstance(first, ast.Attribute) and ast.unparse(first.value) in (
                "q", "self.q", "self.queries", "queries", "migration")
            if node.func.attr in ("_one", "_all", "_run") and ast.unparse(node.func.value) == "self":
                # Store's helpers: every caller passes a named query.
                assert named, f"{path.name}:{node.lineno}: {node.func.attr}({ast.unparse(first)[:80]})"
            receiver = ast.unparse(node.func.value)
            if node.func.attr == "execute" and ("conn" in receiver or "cur" in receiver):
                # Inside Store's helpers the statement is their ``query`` argument (checked above).
                named = named or (isinstance(first, ast.Name) and first.id == "query" and path.name == "store.py")
                allowed = isinstance(first, ast.JoinedStr) and any(
                    text.split("{")[0] in ast.unparse(first) for _, text in _ALLOWED_SQL)
                assert named or allowed, f"{path.name}:{node.lineno}: execute({ast.unparse(first)[:80]})"


@pytest.mark.parametrize("schema", ["Agent", "a-b", "a b", "1abc", 'x"; DROP SCHEMA public; --', "a" * 41,
                                    "agent_server;", "", "ägent", "x\x00"])
def test_schema_name_is_validated_before_any_sql(schema):
    with pytest.raises(ValueError, match="db_schema"):
        EngineSettings(db_schema=schema)


def test_schema_name_reaches_sql_only_as_a_quoted_identifier():
    q = Queries("agent_server")
    assert b'FROM "agent_server".responses' in q.get_response


# ----- no debug or kill endpoint ---------------------------------------------------------------

#: The complete route table: anything else (a debug, admin or kill route) would fail this test.
EXPECTED_ROUTES = {
    ("POST", "/invocations"), ("POST", "/responses"), ("GET", "/agent/info"), ("GET", "/health"),
    ("GET", "/responses/{response_id}"), ("POST", "/responses/{response_id}/cancel"),
    ("DELETE", "/responses/{response_id}"), ("GET", "/responses/{response_id}/input_items"), ("GET", "/responses"),
    # Stored conversations (OpenAI's Conversations API).
    ("POST", "/conversations"), ("GET", "/conversations/{conversation_id}"),
    ("POST", "/conversations/{conversation_id}"), ("DELETE", "/conversations/{conversation_id}"),
    ("GET", "/conversations/{conversation_id}/items"),
    # Long-term memory: the caller's own.
    ("GET", "/memories"), ("POST", "/memories"), ("GET", "/memories/{memory_id}"),
    ("DELETE", "/memories/{memory_id}"), ("DELETE", "/memories"),
    # The web page and its fixed set of files (agent_server/web).
    ("GET", "/"), ("GET", "/web/app.js"), ("GET", "/web/markdown.js"), ("GET", "/web/style.css"),
    ("GET", "/web/icon.svg"), ("GET", "/web/memory.js"), ("GET", "/web/dom.js"),
    # FastAPI's generated API documentation (read-only).
    ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"),
}

DEBUG_PATHS = ["/debug", "/debug/vars", "/debug/pprof", "/_debug", "/__debug__", "/admin", "/admin/kill",
               "/kill", "/shutdown", "/_shutdown", "/exit", "/quit", "/restart", "/reload", "/crash", "/panic",
               "/eval", "/exec", "/console", "/sql", "/query", "/metrics", "/env", "/config", "/settings",
               "/_internal", "/internal/kill", "/test/kill", "/workers", "/workers/kill", "/responses/debug",
               "/responses/kill", "/health/kill", "/agent/kill", "/agent/debug", "/.env", "/server-info"]


def test_route_table_has_no_debug_or_kill_endpoint(shared_server):
    import harness.synthetic_server as serve

    routes = {(method, route.path) for route in serve.app.router.routes
              for method in (getattr(route, "methods", None) or ()) if method != "HEAD"}
    assert routes == EXPECTED_ROUTES


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_debug_paths_are_not_reachable(client, method):
    for path in DEBUG_PATHS:
        response = client.request(method, path)
        assert response.status_code in (400, 404, 405), (method, path, response.status_code)
        assert _is_openai_error(response)
        if response.status_code == 404 and path.startswith("/responses/"):  # read as an unknown response id
            assert response.json()["error"]["code"] in ("response_not_found", None)
    chaos.record("debug_probe", chaos.Figures(bad_inputs=len(DEBUG_PATHS)))
