"""Helpers for tests that run real server processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server started as a child process, reachable at ``base_url``.

    ``argv`` is the command without ``--port``; the port is appended.
    The process gets its own process group so ``kill()`` takes down uvicorn
    workers too.
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, port: int | None = None,
                 log_path: Path | None = None):
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.argv = [*argv, "--port", str(self.port)]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        return self.launch().wait_until_healthy(timeout)

    def launch(self) -> "ServerProcess":
        """Start the process without waiting for it (to start several at once)."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_until_healthy(self, timeout: float = 60.0) -> "ServerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"server did not become healthy in {timeout}s: {self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-chars:]
        return "(no log)"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group and reap the process."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def python_argv(*args: str) -> list[str]:
    """A command that runs with this test session's interpreter."""
    return [sys.executable, *args]


def iter_sse(lines):
    """Frames of an SSE body as they arrive: dicts for JSON data, '[DONE]' for the end."""
    import json

    for line in lines:
        if line.startswith("data: "):
            payload = line[len("data: "):]
            yield payload if payload == "[DONE]" else json.loads(payload)


def parse_sse(lines) -> list[dict | str]:
    """All frames of an SSE body (reads it to the end)."""
    return list(iter_sse(lines))


def stream_frames(client: httpx.Client, method: str, url: str, **kwargs) -> list[dict | str]:
    """Read a whole SSE response (until the server closes it)."""
    with client.stream(method, url, **kwargs) as response:
        response.raise_for_status()
        return parse_sse(response.iter_lines())


def wait_for_status(client: httpx.Client, url: str, statuses: set[str], timeout: float = 30.0,
                    headers: dict | None = None) -> dict:
    """Poll GET ``url`` until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(url, headers=headers).json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.05)
    raise TimeoutError(f"{url} still {body.get('status')!r} after {timeout}s: {body}")


def read_records(path: Path) -> list[dict]:
    """The synthetic agent's invocation record (one JSON object a line)."""
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
