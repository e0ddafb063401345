"""Webhooks (docs/webhooks.md) end to end: real server processes, real receivers on 127.0.0.1
(``harness/webhook_receiver.py``), every delivery verified with the official ``openai`` package's
``client.webhooks.unwrap``, and what is stored read back from the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import threading
import time
import uuid
from types import SimpleNamespace

import httpx
import openai
import pytest

from agent_server.long_running.storage.models import Status, WebhookDeliveryStatus
from agent_server.long_running.storage.store import Finish, Store
from agent_server.long_running.webhooks.deliveries import MAX_RETRY_DELAY_SECONDS, WebhookDeliveries, retry_delay
from agent_server.long_running.webhooks.settings import EVENT_TYPES, WebhookSettings, describe_url
from agent_server.long_running.webhooks.signing import signed_headers
from harness.webhook_receiver import Delivery, WebhookReceiver
from tests.conftest import _start_synthetic
from tests.support import (PROJECT_ROOT, agent_server_process, free_port, insert_response, open_database,
                           wait_for_status)

SECRET = "whsec_" + base64.b64encode(b"webhook-test-key-of-32-bytes-ok!").decode()
OPENAI = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9")  # only its webhooks helper is used
# Short enough for tests: a send gives up after 3 s (a claim's lease: 6 s), the first retry comes
# 0.1-0.2 s after a failure.
FAST = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_TIMEOUT_SECONDS": "3", "WEBHOOK_FIRST_RETRY_SECONDS": "0.2"}


def unwrap(delivery: Delivery, secret: str = SECRET):
    return OPENAI.webhooks.unwrap(delivery.body, delivery.headers, secret=secret)


def create(client: httpx.Client, background: bool = True, **custom) -> str:
    body = {"input": [{"role": "user", "content": "hello"}], "background": background, "custom_inputs": custom}
    response = client.post("/responses", json=body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def wait_until(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not true after {timeout}s")


def delivery_rows(sql, schema: str, response_id: str) -> list[tuple]:
    """(url, status, attempts, event_id, type) of a response's deliveries."""
    return sql(f"SELECT url, status, attempts, event_id, type FROM {schema}.webhook_deliveries "
               "WHERE response_id = %s ORDER BY url", (response_id,))


class Script:
    """What the main receiver answers, per response: a list of steps, the last one repeated; a
    step is a status or ``(event, status)`` (answer once the ``threading.Event`` is set, or after
    30 s). A delivery for a response the test has not named yet waits (up to 10 s) until it is named."""

    def __init__(self):
        self._plans: dict[str, list] = {}
        self._named = threading.Condition()

    def expect(self, response_id: str, *steps) -> None:
        with self._named:
            self._plans[response_id] = list(steps) or [200]
            self._named.notify_all()

    def __call__(self, delivery: Delivery) -> int:
        rid = delivery.response_id
        with self._named:
            self._named.wait_for(lambda: rid in self._plans, timeout=10)
            plan = self._plans.get(rid, [200])
            step = plan.pop(0) if len(plan) > 1 else plan[0]
        if isinstance(step, tuple):
            step[0].wait(30)
            step = step[1]
        return step


@pytest.fixture(scope="module")
def hooks(pg_url, tmp_path_factory, spawns):
    """One server sending to three URLs: the main receiver (scripted), one with nothing
    listening until a test starts it, and one that answers 410."""
    script = Script()
    down_port = free_port()
    with WebhookReceiver(script) as main, WebhookReceiver(lambda _d: 410) as gone:
        down_url = f"http://127.0.0.1:{down_port}/hooks"
        schema = f"wh_{uuid.uuid4().hex[:10]}"
        server = _start_synthetic(pg_url, tmp_path_factory.mktemp("webhooks"), schema,
                                  env={**FAST, "WEBHOOK_URL": f"{main.url}, {down_url},{gone.url}"})
        server.start()
        try:
            yield SimpleNamespace(server=server, schema=schema, script=script, main=main, gone=gone,
                                  down_port=down_port, down_url=down_url)
        finally:
            server.kill()


@pytest.fixture
def hooks_client(hooks):
    with httpx.Client(base_url=hooks.server.base_url, timeout=30) as client:
        yield client


# ----- the server, receivers and the openai package --------------------------------------


def test_each_event_type_is_signed_as_openai_verifies(hooks, hooks_client, sql):
    client = hooks_client
    completed = create(client, deltas=2)
    failed = create(client, deltas=3, fail_after=1)
    cancelled = create(client, deltas=100, pause=0.1)
    for rid in (completed, failed, cancelled):
        hooks.script.expect(rid)
    wait_for_status(client, f"/responses/{cancelled}", {"in_progress"})
    assert client.post(f"/responses/{cancelled}/cancel").json()["status"] == "cancelled"
    expected = {completed: "response.completed", failed: "response.failed", cancelled: "response.cancelled"}
    hooks.main.wait_for(lambda ds: set(expected) <= {d.response_id for d in ds})
    for rid, event_type in expected.items():
        [delivery] = hooks.main.of(rid)
        event = unwrap(delivery)
        assert (event.type, event.data.id, event.object) == (event_type, rid, "event")
        assert event.id == delivery.webhook_id and event.id.startswith("evt_") and len(event.id) == 36
        assert abs(event.created_at - time.time()) < 60
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.event == {"object": "event", "id": event.id, "type": event_type,
                                  "created_at": event.created_at, "data": {"id": rid}}
    # A tampered body, a replaced id or another secret is refused.
    delivery = hooks.main.of(completed)[0]
    with pytest.raises(openai.InvalidWebhookSignatureError):
        OPENAI.webhooks.unwrap(delivery.body.replace(completed.encode(), failed.encode()), delivery.headers,
                               secret=SECRET)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        OPENAI.webhooks.unwrap(delivery.body, {**delivery.headers, "webhook-id": "evt_other"}, secret=SECRET)
    other = "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode()
    with pytest.raises(openai.InvalidWebhookSignatureError):
        unwrap(delivery, secret=other)
    # One event id for every receiver: the down receiver's row carries the same one.
    rows = delivery_rows(sql, hooks.schema, completed)
    assert {row[3] for row in rows} == {delivery.webhook_id}


def _docs_python_block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (PROJECT_ROOT / "docs" / "webhooks.md").read_text(), re.S)
    [block] = [b for b in blocks if containing in b]
    return block


def test_the_receivers_in_the_docs_verify_a_delivery(hooks, hooks_client, monkeypatch):
    from fastapi.testclient import TestClient

    rid = create(hooks_client, deltas=1)
    hooks.script.expect(rid)
    hooks.main.wait_for(lambda ds: any(d.response_id == rid for d in ds))
    [delivery] = hooks.main.of(rid)
    headers = {k: v for k, v in delivery.headers.items() if k not in ("host", "content-length")}
    tampered = delivery.body.replace(b"response.completed", b"response.failed")
    standard_library: dict = {}
    exec(_docs_python_block("def verify"), standard_library)
    assert standard_library["verify"](delivery.body, headers, SECRET)
    assert not standard_library["verify"](tampered, headers, SECRET)
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    with_openai: dict = {}
    exec(_docs_python_block("FastAPI()"), with_openai)
    with TestClient(with_openai["app"]) as receiver:
        assert receiver.post("/hooks/agent", content=delivery.body, headers=headers).status_code == 204
        assert receiver.post("/hooks/agent", content=tampered, headers=headers).status_code == 400


def test_a_standard_response_sends_no_webhook(hooks, hooks_client, sql):
    rid = create(hooks_client, background=False, deltas=1)
    assert hooks_client.get(f"/responses/{rid}").json()["status"] == "completed"
    # Events are queued in the statement that ends a response, which committed before the answer.
    assert delivery_rows(sql, hooks.schema, rid) == []


def test_receiver_errors_are_retried_with_the_same_id(hooks, hooks_client, sql):
    rid = create(hooks_client, deltas=1)
    hooks.script.expect(rid, 500, 503, 200)
    deliveries = hooks.main.wait_for(lambda ds: len([d for d in ds if d.response_id == rid]) >= 3)
    mine = [d for d in deliveries if d.response_id == rid]
    assert len({d.webhook_id for d in mine}) == 1
    assert all(unwrap(d).data.id == rid for d in mine)
    wait_until(lambda: (hooks.main.url, "delivered", 3) in [r[:3] for r in delivery_rows(sql, hooks.schema, rid)],
               what="the delivery recorded as delivered on its third attempt")
    assert len(hooks.main.of(rid)) == 3  # nothing after the 200


def test_a_slow_receiver_times_out_and_gets_it_again(hooks, hooks_client, sql):
    rid = create(hooks_client, deltas=1)
    second_came = threading.Event()
    # The first send hangs until the second arrives: only a server that gave up on it sends again.
    hooks.script.expect(rid, (second_came, 200), 200)
    hooks.main.wait_for(lambda ds: len([d for d in ds if d.response_id == rid]) >= 2)
    second_came.set()
    first, second = hooks.main.of(rid)[:2]
    assert first.webhook_id == second.webhook_id and unwrap(second).data.id == rid
    wait_until(lambda: (hooks.main.url, "delivered", 2) in [r[:3] for r in delivery_rows(sql, hooks.schema, rid)],
               what="delivered on the second attempt")


def test_a_410_stops_deliveries_to_that_url(hooks, hooks_client, sql):
    rid = create(hooks_client, deltas=1)
    hooks.script.expect(rid)
    hooks.gone.wait_for(lambda ds: len(ds) >= 1)
    wait_until(lambda: sql(f"SELECT url FROM {hooks.schema}.webhook_stopped_urls") == [(hooks.gone.url,)],
               what="the 410'd URL recorded as stopped")
    assert "answered 410 Gone: no more deliveries to it" in hooks.server.log_tail(200_000)
    later = create(hooks_client, deltas=1)
    hooks.script.expect(later)
    hooks.main.wait_for(lambda ds: any(d.response_id == later for d in ds))
    # Not even queued for it: the statement that ended the response saw the URL stopped.
    assert hooks.gone.url not in [row[0] for row in delivery_rows(sql, hooks.schema, later)]
    assert later not in {d.response_id for d in hooks.gone.deliveries}
    assert hooks.server.health()["webhooks"]["stopped_urls"] == 1


def test_a_receiver_down_for_a_while_gets_every_event_once_up(hooks, hooks_client):
    rid = create(hooks_client, deltas=1)
    hooks.script.expect(rid)
    # The other receiver is not held up by the one that refuses connections.
    hooks.main.wait_for(lambda ds: any(d.response_id == rid for d in ds))
    [at_main] = hooks.main.of(rid)

    def failing_backlog() -> dict | None:
        webhooks = (hooks.server.health() or {}).get("webhooks", {})
        return webhooks if webhooks.get("failing", 0) >= 1 else None

    webhooks = wait_until(failing_backlog, what="/health showing the failing deliveries")
    assert webhooks["enabled"] and webhooks["urls"] == 3
    assert webhooks["pending"] >= webhooks["failing"] >= 1 and webhooks["oldest_pending_seconds"] > 0
    with WebhookReceiver(port=hooks.down_port) as down:
        assert down.url == hooks.down_url
        down.wait_for(lambda ds: any(d.response_id == rid for d in ds))
        [at_down] = down.of(rid)
        assert at_down.webhook_id == at_main.webhook_id and unwrap(at_down).type == "response.completed"
        assert "fails (ConnectError" in hooks.server.log_tail(200_000)


def test_two_workers_deliver_each_event_once(start_server, db_schema, sql):
    with WebhookReceiver() as receiver:
        # The default 15 s time-out: a lease of 30 s, which no send here comes near.
        server = start_server(db_schema, workers=2, env={"WEBHOOK_SECRET": SECRET, "WEBHOOK_URL": receiver.url})
        server.wait_for_workers(2)
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            rids = {create(client, deltas=1) for _ in range(20)}
        receiver.wait_for(lambda ds: rids <= {d.response_id for d in ds})
        wait_until(lambda: sql(f"SELECT count(*) FROM {db_schema}.webhook_deliveries WHERE status = 'delivered'")
                   == [(20,)], what="every delivery recorded")
        # Each claimed once (attempts counts claims), so each sent once.
        assert sql(f"SELECT DISTINCT attempts FROM {db_schema}.webhook_deliveries") == [(1,)]
        ids = [d.webhook_id for d in receiver.deliveries]
        assert len(ids) == len(set(ids)) == 20
        assert {unwrap(d).data.id for d in receiver.deliveries} == rids


def test_a_delivery_survives_sigkill_between_the_end_and_its_acknowledgement(start_server, db_schema, sql):
    release = threading.Event()

    def hold_the_first(delivery: Delivery) -> int:
        if len(receiver.deliveries) == 1:
            release.wait(30)  # the server is killed while waiting for this answer
        return 200

    with WebhookReceiver(hold_the_first) as receiver:
        env = {**FAST, "WEBHOOK_URL": receiver.url}
        first = start_server(db_schema, env=env)
        with httpx.Client(base_url=first.base_url, timeout=30) as client:
            rid = create(client, deltas=1)
        [held] = receiver.wait_for(lambda ds: len(ds) == 1)
        first.kill()  # SIGKILL, mid-send: the event is stored, not acknowledged
        release.set()
        assert sql(f"SELECT status FROM {db_schema}.webhook_deliveries WHERE response_id = %s", (rid,)) \
            == [("pending",)]
        start_server(db_schema, env=env)  # claims it once the dead one's lease ends
        receiver.wait_for(lambda ds: len(ds) >= 2)
        again = receiver.deliveries[1]
        assert again.webhook_id == held.webhook_id and unwrap(again).data.id == rid
        wait_until(lambda: sql(f"SELECT status FROM {db_schema}.webhook_deliveries WHERE response_id = %s",
                               (rid,)) == [("delivered",)], what="delivered after the restart")


def test_no_secret_no_webhooks_said_once(start_server, db_schema, sql):
    server = start_server(db_schema, env={"WEBHOOK_URL": "http://127.0.0.1:9/hooks"})
    assert server.health()["webhooks"] == {"enabled": False}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        rid = create(client, deltas=1)
        wait_for_status(client, f"/responses/{rid}", {"completed"})
    assert sql(f"SELECT count(*) FROM {db_schema}.webhook_deliveries") == [(0,)]
    log = server.log_tail(200_000)
    assert log.count("Webhooks off: WEBHOOK_URL is set but WEBHOOK_SECRET is not") == 1, log


def test_a_malformed_secret_stops_start_up_naming_it(start_server, db_schema):
    bad = "whsec_this is not base64"
    server = start_server(db_schema, env={"WEBHOOK_URL": "http://127.0.0.1:9/hooks", "WEBHOOK_SECRET": bad},
                          wait=False)
    assert server.proc.wait(timeout=120) != 0
    log = server.log_tail(20_000)
    assert "WEBHOOK_SECRET must be 'whsec_' followed by valid base64" in log
    assert bad not in log  # the message names the setting, never the secret


def test_start_server_refuses_a_malformed_url_naming_it(pg_url, tmp_path, spawns):
    server = agent_server_process("openai", tmp_path, {
        "DATABASE_URL": pg_url, "AGENT_SERVER_DB_SCHEMA": f"wh_{uuid.uuid4().hex[:10]}",
        "WEBHOOK_URL": "https://hooks.example.com/ok,ftp://files.example.com/x", "WEBHOOK_SECRET": SECRET})
    server.launch()
    try:
        assert server.proc.wait(timeout=120) != 0
    finally:
        server.kill()
    assert ("Cannot start the server: WEBHOOK_URL entry 2 (ftp://files.example.com/x) is not an http:// or "
            "https:// URL") in server.log_tail(20_000)


# ----- the engine's parts, in this process, on the real database ----------------------------


def test_settings_from_the_environment():
    on = WebhookSettings.from_environment({
        "WEBHOOK_URL": " https://a.example/h , http://127.0.0.1:8080/x?token=t,https://a.example/h",
        "WEBHOOK_SECRET": SECRET, "WEBHOOK_EVENTS": "response.failed, response.completed",
        "WEBHOOK_RETRY_HOURS": "0.5"})
    assert on.enabled and on.urls == ("https://a.example/h", "http://127.0.0.1:8080/x?token=t")
    assert on.event_types == ("response.completed", "response.failed") and on.retry_horizon_seconds == 1800
    assert (on.timeout_seconds, on.first_retry_seconds) == (15.0, 5.0)
    assert SECRET not in repr(on)
    assert WebhookSettings.from_environment({"WEBHOOK_URL": "https://a.example", "WEBHOOK_SECRET": SECRET,
                                             "WEBHOOK_EVENTS": ""}).event_types == EVENT_TYPES
    for environ, reason in (({}, "WEBHOOK_URL and WEBHOOK_SECRET are not set"),
                            ({"WEBHOOK_URL": "https://a.example"}, "WEBHOOK_SECRET is not"),
                            ({"WEBHOOK_SECRET": SECRET}, "WEBHOOK_URL is not")):
        off = WebhookSettings.from_environment(environ)
        assert not off.enabled and reason in off.off_reason
    short = "whsec_" + base64.b64encode(b"too short").decode()
    for environ, message in (
        ({"WEBHOOK_SECRET": "secret"}, "WEBHOOK_SECRET must start with 'whsec_'"),
        ({"WEBHOOK_SECRET": "whsec_%%%"}, "WEBHOOK_SECRET must be 'whsec_' followed by valid base64"),
        ({"WEBHOOK_SECRET": short}, "WEBHOOK_SECRET's key must be 24 to 64 bytes"),
        ({"WEBHOOK_URL": "example.com/hooks"}, "WEBHOOK_URL entry 1 (a URL without a scheme)"),
        ({"WEBHOOK_URL": "https://ok.example,https://"}, "WEBHOOK_URL entry 2"),
        ({"WEBHOOK_URL": "https://user:pw@h.example:99999/x"}, "WEBHOOK_URL entry 1 (an unparseable URL)"),
        ({"WEBHOOK_EVENTS": "response.done"}, "WEBHOOK_EVENTS has unknown event type(s) response.done"),
        ({"WEBHOOK_RETRY_HOURS": "-1"}, "WEBHOOK_RETRY_HOURS must be a positive number"),
        ({"WEBHOOK_TIMEOUT_SECONDS": "soon"}, "WEBHOOK_TIMEOUT_SECONDS must be a positive number"),
    ):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
            WebhookSettings.from_environment(environ)
        assert "pw" not in str(info.value) and "%%%" not in str(info.value)


def test_logs_show_urls_without_their_tokens():
    assert describe_url("https://user:pw@h.example:8443/hooks/T0K3N?key=s") == "https://h.example:8443/hooks/T0K3N?…"


def test_retry_delays_double_with_jitter_up_to_an_hour():
    for attempts, low, high in ((1, 2.5, 5.0), (2, 5.0, 10.0), (5, 40.0, 80.0), (40, 1800.0, 3600.0)):
        delays = [retry_delay(attempts, 5.0) for _ in range(200)]
        assert all(low <= d <= high for d in delays) and len(set(delays)) > 1
    assert retry_delay(10_000, 5.0) <= MAX_RETRY_DELAY_SECONDS


def _finish(rid: str, status: Status) -> Finish:
    return Finish(rid, 1, status, [], None, None, [(1, status.terminal_event_type, "{}")])


async def _run_deliveries(pg_url: str, schema: str, settings: WebhookSettings, until, timeout: float = 30.0):
    """Responses ended through a store with ``settings``' fan-out, delivered by a loop in this process."""
    db = await open_database(pg_url, schema)
    deliveries = WebhookDeliveries(settings, poll_interval_seconds=0.2, retention_seconds=3600)
    store = Store(db, webhooks=deliveries.fanout())
    deliveries.start(store)
    try:
        rids = {status: f"resp_{uuid.uuid4().hex}" for status in
                (Status.COMPLETED, Status.INCOMPLETE, Status.FAILED, Status.CANCELLED)}
        for rid in rids.values():
            await insert_response(store, rid)
        standard = f"resp_{uuid.uuid4().hex}"
        await store.insert_response(response_id=standard, owner="", status=Status.IN_PROGRESS, worker_id="w",
                                    created_at=time.time(), request={"input": []}, request_headers={}, model="m",
                                    created_event="{}", background=False)
        ended = await store.finish_responses([_finish(rid, status) for status, rid in rids.items()]
                                             + [_finish(standard, Status.COMPLETED)])
        assert len(ended) == 5
        deadline = time.monotonic() + timeout
        while not await until(store) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return rids, standard
    finally:
        await deliveries.close()
        await db.close()


def test_the_event_filter_and_an_incomplete_response(pg_url, db_schema, sql):
    """``response.incomplete`` (no run of this server ends so today) is delivered like the others;
    ``WEBHOOK_EVENTS`` leaves out the rest; every receiver gets the same event id."""
    with WebhookReceiver() as one, WebhookReceiver() as two:
        settings = WebhookSettings.from_environment({
            "WEBHOOK_URL": f"{one.url},{two.url}", "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_EVENTS": "response.incomplete,response.completed"})

        async def both_delivered(store):
            return (await store.webhook_backlog(settings.urls)).pending == 0 and len(two.deliveries) >= 2

        rids, standard = asyncio.run(_run_deliveries(pg_url, db_schema, settings, both_delivered))
        rows = sql(f"SELECT response_id, url, type, event_id, status FROM {db_schema}.webhook_deliveries")
        assert {(r[0], r[1], r[2], r[4]) for r in rows} == {
            (rids[status], url, status.terminal_event_type, "delivered")
            for status in (Status.COMPLETED, Status.INCOMPLETE) for url in (one.url, two.url)}
        for receiver in (one, two):
            events = {unwrap(d).data.id: unwrap(d) for d in receiver.deliveries}
            assert set(events) == {rids[Status.COMPLETED], rids[Status.INCOMPLETE]}
            assert events[rids[Status.INCOMPLETE]].type == "response.incomplete"
        assert {d.webhook_id for d in one.deliveries} == {d.webhook_id for d in two.deliveries}
        assert standard not in {r[0] for r in rows}


def test_a_delivery_is_given_up_after_the_retry_horizon(pg_url, db_schema, sql, caplog):
    caplog.set_level(logging.ERROR, logger="agent_server.long_running.webhooks.deliveries")
    with WebhookReceiver(lambda _d: 500) as receiver:
        settings = WebhookSettings.from_environment({
            "WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET, "WEBHOOK_EVENTS": "response.completed",
            "WEBHOOK_RETRY_HOURS": "0.0005", "WEBHOOK_FIRST_RETRY_SECONDS": "0.1"})  # 1.8 s

        async def given_up(store):
            return (await store.webhook_backlog(settings.urls)).pending == 0

        rids, _ = asyncio.run(_run_deliveries(pg_url, db_schema, settings, given_up))
        [(status, attempts, error)] = sql(f"SELECT status, attempts, last_error FROM {db_schema}.webhook_deliveries")
        assert (status, error) == (WebhookDeliveryStatus.FAILED.value, "HTTP 500")
        assert attempts == len(receiver.deliveries) >= 2
        assert len({d.webhook_id for d in receiver.deliveries}) == 1
    assert any("given up" in r.getMessage() and rids[Status.COMPLETED] in r.getMessage() for r in caplog.records)


def test_signatures_are_what_the_openai_package_checks():
    key = base64.b64decode(SECRET[len("whsec_"):])
    body = b'{"object":"event","id":"evt_1","type":"response.completed","created_at":1,"data":{"id":"resp_1"}}'
    headers = signed_headers(key, "evt_1", int(time.time()), body)
    assert OPENAI.webhooks.unwrap(body, headers, secret=SECRET).data.id == "resp_1"
    stale = signed_headers(key, "evt_1", int(time.time()) - 3600, body)
    with pytest.raises(openai.InvalidWebhookSignatureError):  # receivers refuse old timestamps
        OPENAI.webhooks.unwrap(body, stale, secret=SECRET)
