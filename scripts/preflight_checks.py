"""The checks preflight runs against a live server, one per request pattern of
the HTTP contract (docs/protocol.md, in the README as "The
three request patterns"), plus resume and cancel.

Each check returns a :class:`CheckResult`; none raises, so one failure never
hides the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

TERMINAL = {"completed", "failed", "cancelled", "incomplete"}
TERMINAL_EVENTS = {f"response.{s}" for s in TERMINAL}


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class PreflightClient:
    """Talks to one server; ``custom_inputs`` go with every agent request."""

    http: httpx.Client
    prompt: str
    timeout: float
    custom_inputs: dict[str, Any] | None = None
    cancel_custom_inputs: dict[str, Any] | None = None
    # Asks for the agents' research tool, which runs for the given time (the
    # offline model follows the same rule), so the cancel finds it running.
    cancel_prompt: str = "Research the history of tide tables for 60 seconds."
    # Filled by the stream check, read by the resume check.
    streamed: dict[str, Any] = field(default_factory=dict)

    def body(self, *, prompt: str | None = None, custom_inputs: dict | None = None, **flags) -> dict:
        body: dict[str, Any] = {"input": [{"role": "user", "content": prompt or self.prompt}], **flags}
        inputs = custom_inputs if custom_inputs is not None else self.custom_inputs
        if inputs:
            body["custom_inputs"] = inputs
        return body


class CheckFailed(Exception):
    """A check's expectation did not hold; the message says which."""


def run_check(name: str, fn: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, fn())
    except CheckFailed as exc:
        return CheckResult(name, False, str(exc))
    except httpx.HTTPError as exc:
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # an unexpected answer shape is a failed check, not a crash
        return CheckResult(name, False, f"unexpected {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------ helpers


def _json(response: httpx.Response, what: str) -> dict:
    if response.status_code != 200:
        raise CheckFailed(f"{what} answered HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def output_text(payload: dict) -> str:
    """The assistant text of a Response object or a standard answer."""
    texts = []
    for item in payload.get("output") or []:
        if item.get("type") == "message":
            texts += [c.get("text", "") for c in item.get("content") or [] if c.get("type") == "output_text"]
    return "".join(texts)


def sse_events(response: httpx.Response) -> Iterator[dict | str]:
    """Parsed ``data:`` frames; the string ``"[DONE]"`` for the end marker."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        yield "[DONE]" if data == "[DONE]" else json.loads(data)


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def wait_terminal(client: PreflightClient, response_id: str) -> dict:
    deadline = time.monotonic() + client.timeout
    while True:
        payload = _json(client.http.get(f"/responses/{response_id}"), f"GET /responses/{response_id}")
        if payload.get("status") in TERMINAL:
            return payload
        if time.monotonic() > deadline:
            raise CheckFailed(f"{response_id} still {payload.get('status')} after {client.timeout:.0f}s")
        time.sleep(0.2)


def _require_completed(payload: dict) -> str:
    if payload.get("status") != "completed":
        raise CheckFailed(f"status {payload.get('status')}, error {payload.get('error')}")
    text = output_text(payload)
    if not text.strip():
        raise CheckFailed("completed, but the output has no assistant text")
    return text


# ------------------------------------------------------------------- checks


def check_health(client: PreflightClient) -> str:
    """The server answers and its database is connected (background mode available)."""
    health = _json(client.http.get("/health"), "GET /health")
    database = health.get("database") or {}
    if database.get("status") not in (None, "connected"):
        raise CheckFailed(f"database {database.get('status')}: {database.get('error')}")
    return f"database {database.get('backend', '?')} {database.get('status', 'not reported')}"


def check_standard(client: PreflightClient) -> str:
    """POST /responses without background: blocks until the answer is there."""
    started = time.monotonic()
    payload = _json(client.http.post("/responses", json=client.body()), "POST /responses")
    text = output_text(payload)
    if not text.strip():
        raise CheckFailed(f"no assistant text in the answer: {json.dumps(payload)[:300]}")
    return f"{time.monotonic() - started:.1f}s: {_short(text)!r}"


def check_background_poll(client: PreflightClient) -> str:
    """background: true answers at once with a queued/in-progress response; polling reaches completed."""
    started = time.monotonic()
    created = _json(client.http.post("/responses", json=client.body(background=True)), "POST /responses (background)")
    if created.get("status") not in ("queued", "in_progress"):
        raise CheckFailed(f"expected status queued or in_progress at once, got {created.get('status')}")
    if created.get("background") is not True:
        raise CheckFailed("the Response object does not say background: true")
    text = _require_completed(wait_terminal(client, created["id"]))
    return f"{created['id']} completed in {time.monotonic() - started:.1f}s: {_short(text)!r}"


def check_background_stream(client: PreflightClient) -> str:
    """background + stream: SSE from event 0 (response.created) to a terminal event and [DONE]."""
    events: list[dict] = []
    done = False
    with client.http.stream("POST", "/responses", json=client.body(background=True, stream=True)) as response:
        if response.status_code != 200:
            raise CheckFailed(f"HTTP {response.status_code}: {response.read()[:300]!r}")
        for event in sse_events(response):
            if event == "[DONE]":
                done = True
                break
            events.append(event)
    if not events or events[0].get("type") != "response.created":
        raise CheckFailed(f"first event is {events[0].get('type') if events else 'missing'}, expected response.created")
    response_id = events[0].get("response_id") or (events[0].get("response") or {}).get("id")
    numbers = [e.get("sequence_number") for e in events]
    if numbers != list(range(len(events))):
        raise CheckFailed(f"sequence numbers are not 0, 1, 2, …: {numbers[:20]}")
    if events[-1].get("type") != "response.completed":
        raise CheckFailed(f"last event is {events[-1].get('type')}, expected response.completed")
    if not done:
        raise CheckFailed("the stream ended without data: [DONE]")
    client.streamed = {"id": response_id, "events": events}
    return f"{response_id}: {len(events)} events, 0…{len(events) - 1}, then [DONE]"


def check_stream_resume(client: PreflightClient) -> str:
    """GET /responses/{id}?stream=true&starting_after=0 replays exactly events 1…N."""
    if not client.streamed:
        raise CheckFailed("skipped: the background + stream check did not produce a response")
    response_id, original = client.streamed["id"], client.streamed["events"]
    replayed: list[dict] = []
    params = {"stream": "true", "starting_after": "0"}
    with client.http.stream("GET", f"/responses/{response_id}", params=params) as response:
        if response.status_code != 200:
            raise CheckFailed(f"HTTP {response.status_code}: {response.read()[:300]!r}")
        for event in sse_events(response):
            if event == "[DONE]":
                break
            replayed.append(event)
    if replayed != original[1:]:
        got = [e.get("sequence_number") for e in replayed][:20]
        raise CheckFailed(f"replay differs from the live stream after event 0 (got sequence numbers {got})")
    return f"{len(replayed)} events replayed identically"


def check_cancel(client: PreflightClient) -> str:
    """Cancel a running background response; it ends cancelled, and a second cancel is harmless."""
    body = client.body(prompt=client.cancel_prompt, custom_inputs=client.cancel_custom_inputs, background=True)
    created = _json(client.http.post("/responses", json=body), "POST /responses (background)")
    response_id = created["id"]
    cancelled = _json(client.http.post(f"/responses/{response_id}/cancel"), "POST /responses/{id}/cancel")
    again = _json(client.http.post(f"/responses/{response_id}/cancel"), "second POST /responses/{id}/cancel")
    final = wait_terminal(client, response_id)
    if final.get("status") == "completed":
        # Possible when the agent answers faster than the cancel arrives.
        return f"{response_id} finished before the cancel arrived (cancel answered {cancelled.get('status')})"
    if final.get("status") != "cancelled" or again.get("status") != "cancelled":
        raise CheckFailed(f"status after cancel is {final.get('status')} (second cancel: {again.get('status')})")
    return f"{response_id} cancelled; cancelling again answered cancelled"


CHECKS: list[tuple[str, Callable[[PreflightClient], str]]] = [
    ("health", check_health),
    ("standard", check_standard),
    ("background + poll", check_background_poll),
    ("background + stream", check_background_stream),
    ("stream resume (starting_after)", check_stream_resume),
    ("cancel", check_cancel),
]


def run_all(client: PreflightClient, report: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Run every check in order; ``report`` sees each result as soon as it is known."""
    results = []
    for name, fn in CHECKS:
        result = run_check(name, lambda fn=fn: fn(client))
        if report is not None:
            report(result)
        results.append(result)
    return results
