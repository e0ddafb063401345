"""Bad input gets a clear 4xx in OpenAI's error shape and changes nothing stored."""

from __future__ import annotations

import pytest

RID = "resp_" + "a" * 32


def _counts(sql, schema):
    return sql(f"SELECT (SELECT count(*) FROM {schema}.responses), (SELECT count(*) FROM {schema}.events)")


CASES = [
    # (method, path, kwargs, status, code or None)
    ("POST", "/responses", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
    ("POST", "/responses", {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
    ("POST", "/responses", {"json": ["a", "list"]}, 400, "invalid_json"),
    ("POST", "/responses", {"json": {"background": True}}, 400, "invalid_request"),
    ("POST", "/responses", {"json": {"input": 42, "background": True}}, 400, "invalid_request"),
    ("POST", "/responses", {"json": {"input": {"role": "user"}, "background": True}}, 400, "invalid_request"),
    ("POST", "/responses", {"json": {"input": [{"role": 7, "content": None}], "background": True}}, 400, "invalid_request"),
    ("POST", "/responses", {"json": {"input": "hi", "background": "yes please"}}, 400, "invalid_parameter"),
    ("POST", "/responses", {"json": {"input": "hi", "stream": 3}}, 400, "invalid_parameter"),
    ("POST", "/responses", {"json": {"input": "hi", "background": True, "custom_inputs": "nope"}}, 400, "invalid_request"),
    ("POST", "/invocations", {"content": b"[", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
    ("POST", "/responses", {"content": b'{"input": "' + b"x" * (11 * 1024 * 1024) + b'"}',
                            "headers": {"content-type": "application/json"}}, 413, "body_too_large"),
    ("GET", f"/responses/{RID}", {"params": {"stream": "true", "starting_after": "-1"}}, 400, "invalid_parameter"),
    ("GET", f"/responses/{RID}", {"params": {"stream": "true", "starting_after": "1.5"}}, 400, "invalid_parameter"),
    ("GET", f"/responses/{RID}", {"params": {"stream": "true", "starting_after": "99999999999"}}, 400, "invalid_parameter"),
    ("GET", f"/responses/{RID}", {"params": {"starting_after": "3"}}, 400, "invalid_parameter"),
    ("GET", f"/responses/{RID}", {"params": {"stream": "maybe"}}, 400, "invalid_parameter"),
    ("GET", f"/responses/{RID}", {}, 404, "response_not_found"),
    ("GET", "/responses/resp_short", {}, 404, "response_not_found"),
    ("GET", "/responses/'; DROP TABLE responses; --", {}, 404, "response_not_found"),
    ("POST", f"/responses/{RID}/cancel", {}, 404, "response_not_found"),
    ("POST", "/responses/not-an-id/cancel", {}, 404, "response_not_found"),
    ("DELETE", f"/responses/{RID}", {}, 404, "response_not_found"),
    ("PUT", f"/responses/{RID}", {}, 405, None),
    ("PATCH", "/responses", {}, 405, None),
    ("GET", "/no/such/route", {}, 404, None),
]


@pytest.mark.parametrize("method,path,kwargs,status,code", CASES, ids=[f"{c[0]} {c[1][:30]} {c[3]}" for c in CASES])
def test_bad_input_is_rejected_cleanly(client, sql, shared_schema, method, path, kwargs, status, code):
    before = _counts(sql, shared_schema)
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["message"] and len(error["message"]) < 3000
    if code:
        assert error["code"] == code
    assert _counts(sql, shared_schema) == before


def test_starting_after_past_a_finished_log_is_rejected(client):
    from tests.support import wait_for_status

    rid = client.post("/responses", json={"input": "hi", "background": True, "custom_inputs": {"deltas": 1}}).json()["id"]
    wait_for_status(client, f"/responses/{rid}", {"completed"})
    response = client.get(f"/responses/{rid}", params={"stream": "true", "starting_after": 1000})
    assert response.status_code == 400
    assert "past the last event" in response.json()["error"]["message"]
