"""Database outages and shutdowns, with real processes: a PostgreSQL of the test's
own that it SIGKILLs, SIGSTOPs and restarts, and server processes it SIGTERMs.

Every request answers within a generous multiple of the bound (503 in OpenAI's
shape, never a 500 or a hang), every live stream ends with an ``error`` frame
and ``[DONE]``, and every run completes once the database is back, its log
contiguous, nothing lost or doubled.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from agent_server.long_running.storage.embedded import EmbeddedPostgres
from harness import chaos
from harness.chaos import Figures
from tests.conftest import _start_synthetic
from tests.support import iter_sse, parse_sse, wait_for_status

BOUND = 2.0  # db_request_timeout_seconds (the default)
# Generous: two cores shared by four test sessions. A hang is unbounded; a 500 is not a 503.
ANSWER_WITHIN = BOUND * 4


class OwnPostgres:
    """An embedded PostgreSQL only this test uses, so it may kill and freeze it."""

    def __init__(self, data_dir: Path):
        self.pg = EmbeddedPostgres(data_dir)
        self.url = self.pg.start()
        self.data_dir = Path(data_dir).resolve()

    def processes(self) -> list[psutil.Process]:
        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]

    def signal_all(self, sig: int) -> None:
        for proc in self.processes():
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass

    def kill(self) -> None:
        procs = self.processes()
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)

    def restart_after_kill(self) -> None:
        assert self.pg.restart() == self.url  # its stop finds nothing to stop; then it starts afresh

    def close(self) -> None:
        try:
            self.signal_all(signal.SIGCONT)
        except (FileNotFoundError, psutil.NoSuchProcess):
            pass
        self.pg.stop()


@pytest.fixture
def own_pg(tmp_path, spawns):
    pg = OwnPostgres(tmp_path / "pg")
    yield pg
    pg.close()


@pytest.fixture
def servers(tmp_path, spawns):
    started = []

    def start(pg_url: str, schema: str = "outage", **kwargs):
        server = _start_synthetic(pg_url, tmp_path, schema, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


class Reader(threading.Thread):
    """Reads one SSE stream to its end, keeping every frame and when the stream ended."""

    def __init__(self, url: str, *, method: str = "GET", body: dict | None = None):
        super().__init__(daemon=True)
        self.url, self.method, self.body = url, method, body
        self.frames: list[dict | str] = []
        self.ended_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(120, connect=10)) as client:
                with client.stream(self.method, self.url, json=self.body) as response:
                    response.raise_for_status()
                    for frame in iter_sse(response.iter_lines()):
                        self.frames.append(frame)
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc
        self.ended_at = time.monotonic()

    def events(self) -> list[dict]:
        return [f for f in self.frames if isinstance(f, dict) and f.get("type") != "error"]

    def last_sequence(self) -> int:
        return max((e["sequence_number"] for e in self.events()), default=-1)

    def response_id(self) -> str:
        return self.events()[0]["response"]["id"]


def _body(deltas: int, pause: float) -> dict:
    return {"input": "hi", "background": True, "stream": True,
            "custom_inputs": {"deltas": deltas, "pause": pause}}


def _start_streams(base_url: str, count: int, deltas: int = 30, pause: float = 0.3) -> list[Reader]:
    readers = [Reader(f"{base_url}/responses", method="POST", body=_body(deltas, pause)) for _ in range(count)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 60
    while not all(any(isinstance(f, dict) and f["type"] == "response.output_text.delta" for f in r.frames)
                  for r in readers):
        assert time.monotonic() < deadline, [(r.frames[-3:], r.error) for r in readers]
        time.sleep(0.05)
    return readers


def _timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _assert_unavailable(response: httpx.Response, took: float) -> None:
    assert took < ANSWER_WITHIN, f"answered after {took:.1f}s"
    assert response.status_code == 503, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == "database_unavailable", error
    assert "database is unreachable" in error["message"]


def _probe_during_outage(base_url: str, response_id: str) -> int:
    """Every database-backed request answers 503 in words within the bound; /health says degraded.
    Returns how many answers were another 5xx (for the figures; the checks then fail)."""
    answers = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for method, path, body in [
            ("GET", f"/responses/{response_id}", None),
            ("GET", f"/responses/{response_id}/input_items", None),
            ("GET", "/responses", None),
            ("POST", "/responses", {"input": "hi", "background": True}),
        ]:
            answers.append(_timed(lambda: client.request(method, path, json=body)))
        health, took = _timed(lambda: client.get("/health"))
    five_xx = sum(1 for response, _ in answers if response.status_code >= 500 and response.status_code != 503)
    for response, took in answers:
        _assert_unavailable(response, took)
    assert took < ANSWER_WITHIN, took
    assert health.json()["status"] == "degraded", health.json()
    return five_xx


def _assert_streams_ended_with_error(readers: list[Reader], code: str, within: float) -> None:
    deadline = time.monotonic() + within
    for reader in readers:
        reader.join(max(deadline - time.monotonic(), 0.1))
        assert not reader.is_alive(), f"stream still open {within}s later: {reader.frames[-3:]}"
        assert reader.error is None, reader.error
        assert reader.frames[-1] == "[DONE]", reader.frames[-3:]
        error = reader.frames[-2]
        assert error["type"] == "error" and error["code"] == code, error
        assert "sequence_number" not in error  # not an event of the log: a resumed stream does not replay it


def _check_run(base_url: str, reader: Reader) -> Figures:
    """The run completes with its whole text; resuming from the reader's cursor gives exactly the
    rest of the log (nothing lost, nothing twice), and the stored log is contiguous."""
    rid = reader.response_id()
    with httpx.Client(base_url=base_url, timeout=120) as client:
        final = wait_for_status(client, f"/responses/{rid}", {"completed", "failed", "cancelled"}, timeout=180)
        with client.stream("GET", f"/responses/{rid}",
                           params={"stream": "true", "starting_after": reader.last_sequence()}) as response:
            rest = parse_sse(response.iter_lines())
        with client.stream("GET", f"/responses/{rid}", params={"stream": "true"}) as response:
            whole = parse_sse(response.iter_lines())
    seen = [e["sequence_number"] for e in reader.events()] + [e["sequence_number"] for e in rest[:-1]]
    stored = [e["sequence_number"] for e in whole[:-1]]
    text = final["output"][-1]["content"][0]["text"] if final["status"] == "completed" else ""
    survived = (final["status"] == "completed" and text == "".join(f"delta-{i} " for i in range(30))
                and stored == list(range(len(stored))) and whole[-2]["type"] == "response.completed")
    return Figures(runs=1, runs_survived=int(survived), events_lost=len(set(stored) - set(seen)),
                   events_duplicated=len(seen) - len(set(seen)))


def _check_runs(base_url: str, readers: list[Reader], scenario: str, five_xx: int) -> None:
    figures = Figures(five_xx=five_xx)
    for reader in readers:
        figures += _check_run(base_url, reader)
    chaos.record(scenario, figures)
    assert figures == Figures(runs=len(readers), runs_survived=len(readers)), figures


def test_database_frozen_requests_answer_503_in_time_and_streams_end_with_an_error(own_pg, servers):
    server = servers(own_pg.url)
    readers = _start_streams(server.base_url, 4)
    own_pg.signal_all(signal.SIGSTOP)
    try:
        frozen_at = time.monotonic()
        five_xx = _probe_during_outage(server.base_url, readers[0].response_id())
        # A client that got no answer retries with its Idempotency-Key (the frozen insert may land later).
        retried = httpx.post(f"{server.base_url}/responses", json={"input": "once", "background": True},
                             headers={"Idempotency-Key": "frozen-retry"}, timeout=60)
        assert retried.status_code == 503, retried.text
        # A stream whose run makes no progress asks the database each poll interval (1s).
        _assert_streams_ended_with_error(readers, "database_unavailable",
                                         within=max(0.0, 1.0 + ANSWER_WITHIN * 2 - (time.monotonic() - frozen_at)))
    finally:
        own_pg.signal_all(signal.SIGCONT)
    _check_runs(server.base_url, readers, "postgres_frozen", five_xx)
    ids = {httpx.post(f"{server.base_url}/responses", json={"input": "once", "background": True},
                      headers={"Idempotency-Key": "frozen-retry"}, timeout=60).json()["id"] for _ in range(2)}
    assert len(ids) == 1
    with psycopg.connect(own_pg.url, autocommit=True) as conn:
        stored = conn.execute("SELECT count(*) FROM outage.responses WHERE idempotency_key = 'frozen-retry'")
        assert stored.fetchone()[0] == 1


def test_database_killed_requests_answer_503_in_time_and_runs_complete_once_it_is_back(own_pg, servers):
    server = servers(own_pg.url)
    readers = _start_streams(server.base_url, 4)
    own_pg.kill()
    killed_at = time.monotonic()
    five_xx = _probe_during_outage(server.base_url, readers[0].response_id())
    _assert_streams_ended_with_error(readers, "database_unavailable",
                                     within=max(0.0, 1.0 + ANSWER_WITHIN * 2 - (time.monotonic() - killed_at)))
    own_pg.restart_after_kill()
    _check_runs(server.base_url, readers, "postgres_killed", five_xx)


def test_sigterm_ends_open_streams_exits_within_the_bound_and_another_worker_resumes_at_once(
        start_server, db_schema):
    # A stale threshold far beyond the test's bounds: a quick resume can only come from released leases.
    settings = {"heartbeat_interval_seconds": 1.0, "heartbeat_stale_threshold_seconds": 120.0}
    leaving = start_server(db_schema, **settings)
    staying = start_server(db_schema, **settings)
    readers = _start_streams(leaving.base_url, 3)
    signalled = time.monotonic()
    os.kill(leaving.pid, signal.SIGTERM)
    leaving.proc.wait(timeout=60)
    exited_after = time.monotonic() - signalled
    # The bound is 5s (shutdown_timeout_seconds); Databricks Apps allows 15s.
    assert exited_after < 12, f"exited {exited_after:.1f}s after SIGTERM"
    _assert_streams_ended_with_error(readers, "server_shutting_down", within=10)
    with httpx.Client(base_url=staying.base_url, timeout=30) as client:
        for reader in readers:
            resumed = wait_for_status(client, f"/responses/{reader.response_id()}",
                                      {"in_progress", "completed"}, timeout=60)
            deadline = time.monotonic() + 20
            while resumed["status"] == "in_progress" and resumed["attempt_number"] < 2:
                assert time.monotonic() < deadline, f"not resumed within 20s of the hand-over: {resumed}"
                time.sleep(0.2)
                resumed = client.get(f"/responses/{reader.response_id()}").json()
    _check_runs(staying.base_url, readers, "sigterm_with_streams", 0)
    assert "Released 3 running response(s)" in leaving.log_tail(20000)


def test_the_openai_client_yields_the_shutdown_error_frame_as_an_error_event(start_server, db_schema):
    import openai
    from openai.types.responses import ResponseErrorEvent

    server = start_server(db_schema)
    sdk = openai.OpenAI(base_url=server.base_url, api_key="unused")
    stream = sdk.responses.create(model="agent", input="hi", background=True, stream=True,
                                  extra_body={"custom_inputs": {"deltas": 100, "pause": 0.1}})
    events = []
    for event in stream:
        events.append(event)
        if event.type == "response.output_text.delta" and sum(e.type == event.type for e in events) == 2:
            os.kill(server.pid, signal.SIGTERM)
    assert isinstance(events[-1], ResponseErrorEvent), events[-3:]
    assert events[-1].code == "server_shutting_down" and "shutting down" in events[-1].message


def test_sigterm_to_a_multi_worker_supervisor_exits_within_the_bound(start_server, db_schema):
    server = start_server(db_schema, workers=2)
    readers = _start_streams(server.base_url, 4)
    # A standard stream with store: false runs in memory: it cannot be resumed, but it still ends in words.
    unstored = Reader(f"{server.base_url}/responses", method="POST",
                      body={"input": "hi", "stream": True, "store": False,
                            "custom_inputs": {"deltas": 30, "pause": 0.3}})
    unstored.start()
    deadline = time.monotonic() + 60
    while not any(isinstance(f, dict) and f["type"] == "response.output_text.delta" for f in unstored.frames):
        assert time.monotonic() < deadline and unstored.error is None, (unstored.frames, unstored.error)
        time.sleep(0.05)
    readers.append(unstored)
    signalled = time.monotonic()
    os.kill(server.pid, signal.SIGTERM)  # the supervisor, as a platform stops an app
    server.proc.wait(timeout=60)
    exited_after = time.monotonic() - signalled
    assert exited_after < 12, f"exited {exited_after:.1f}s after SIGTERM"
    _assert_streams_ended_with_error(readers, "server_shutting_down", within=10)
