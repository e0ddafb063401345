"""A server run as a child process on 127.0.0.1, in its own process group.

Shared by ``preflight``, the benchmark, the chaos harness and the tests: each
starts real server processes, waits for ``/health``, and must be able to kill
uvicorn together with its workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerProcess:
    """``argv`` (without ``--port``) started with ``--port N`` appended.

    Output goes to ``log_path`` (or nowhere). ``kill()`` signals the whole
    process group, so ``--workers`` children go too.
    """

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, port: int | None = None,
                 log_path: Path | None = None):
        self.port = port or free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.argv = [*argv, "--port", str(self.port)]
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def launch(self) -> "ServerProcess":
        """Start the process without waiting for it (to start several at once)."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=PROJECT_ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if self.log_path:
                out.close()
        return self

    def health(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """``GET /health`` as JSON, or None if the server does not answer (yet)."""
        try:
            response = httpx.get(f"{self.base_url}/health", timeout=timeout)
            return response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def wait_until_healthy(self, timeout: float = 120.0, *, database: bool = False) -> "ServerProcess":
        """Wait until ``/health`` answers (with ``database=True``: and the database is connected).

        Raises RuntimeError if the process exits first, TimeoutError (after
        killing it) if it is not ready in ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            health = self.health()
            if health is not None and (not database or health.get("database", {}).get("status") == "connected"):
                return self
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"server did not become healthy in {timeout:.0f}s: {self.log_tail()}")

    def wait_for_workers(self, count: int, timeout: float = 120.0) -> "ServerProcess":
        """Wait until ``count`` distinct worker processes have answered ``/health``
        (each call is a new connection, so the kernel spreads them over the workers)."""
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while len(seen) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(seen)} of {count} workers answered in {timeout:.0f}s: {self.log_tail()}")
            health = self.health()
            if health is not None:
                seen.add(health["worker"]["id"])
            time.sleep(0.05)
        return self

    def start(self, timeout: float = 120.0) -> "ServerProcess":
        return self.launch().wait_until_healthy(timeout)

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-chars:]
        return "(no log)"

    def kill(self, sig: int = signal.SIGKILL, wait: float = 15.0) -> None:
        """Send ``sig`` to the process group and reap it (SIGKILL if it lingers)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=wait)

    def stop(self, wait: float = 60.0) -> None:
        """Graceful stop: SIGTERM (uvicorn shuts down, leases are released); SIGKILL after ``wait``."""
        self.kill(signal.SIGTERM, wait=wait)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
