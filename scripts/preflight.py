"""Start the server with the current configuration and check it end to end.

Preflight starts ``start-server`` on a free port of 127.0.0.1 with your
environment (and ``.env``, which the server reads), then sends one request in
each of the three patterns (standard, background + poll, background +
stream), replays the stream with ``starting_after``, cancels a running
response, and prints one PASS/FAIL line per check. It exits non-zero when
any check fails, with the tail of the server log.

``--url`` checks a server that is already running instead (for example a
deployed app, with ``--token``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from .preflight_checks import CHECKS, CheckResult, PreflightClient, run_all
from .server_process import ServerProcess, free_port



def default_command() -> list[str]:
    """``start-server`` from this environment, else through uv."""
    script = Path(sys.executable).with_name("start-server")
    return [str(script)] if script.exists() else ["uv", "run", "start-server"]


class StartedServer(ServerProcess):
    """The server process preflight started, in its own process group."""

    def __init__(self, command: list[str], port: int, log_path: Path):
        super().__init__(command, port=port, log_path=log_path)
        self.command = self.argv

    def start(self) -> None:
        self.launch()

    def wait_healthy(self, timeout: float) -> str:
        """Wait for /health to report a connected database; return why not, or ''."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"the server exited with code {self.proc.returncode}"
            health = self.health()
            if health is not None:
                database = health.get("database") or {}
                if database.get("status") in (None, "connected"):
                    return ""
                last = f"/health: {json.dumps(database)[:300]}"
            time.sleep(0.2)
        return f"not healthy after {timeout:.0f}s ({last})"


def _json_arg(value: str) -> dict:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preflight",
        description=(
            "Start the agent server with the current configuration and check the standard, background + poll "
            "and background + stream request patterns, stream resume and cancel. Prints PASS/FAIL per check; "
            "exits 1 on any failure."
        ),
    )
    parser.add_argument("--url", help="check this running server instead of starting one")
    parser.add_argument("--token", default=os.environ.get("PREFLIGHT_TOKEN"),
                        help="bearer token for --url (e.g. from `databricks auth token`); env PREFLIGHT_TOKEN")
    parser.add_argument("--command", type=shlex.split, default=None,
                        help="server command to start, without --port (default: start-server)")
    parser.add_argument("--port", type=int, help="port for the started server (default: a free one)")
    parser.add_argument("--prompt", default="Say hello in five words.", help="user message for the checks")
    parser.add_argument("--custom-inputs", type=_json_arg, help="JSON object sent as custom_inputs")
    parser.add_argument("--cancel-custom-inputs", type=_json_arg,
                        help="JSON custom_inputs for the long request of the cancel check")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per check (default 120)")
    parser.add_argument("--startup-timeout", type=float, default=120.0,
                        help="seconds to wait for the server to become healthy (default 120)")
    parser.add_argument("--log-file", type=Path, help="where the started server logs (default: a temp file)")
    return parser


# Wide enough for every check name, so the columns line up while printing as we go.
NAME_WIDTH = max(len("server starts"), *(len(name) for name, _ in CHECKS))


def print_result(result: CheckResult) -> None:
    print(f"{'PASS' if result.ok else 'FAIL'}  {result.name.ljust(NAME_WIDTH)}  {result.detail}", flush=True)


def check_server(base_url: str, args: argparse.Namespace) -> list[CheckResult]:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as http:
        client = PreflightClient(
            http=http,
            prompt=args.prompt,
            timeout=args.timeout,
            custom_inputs=args.custom_inputs,
            cancel_custom_inputs=args.cancel_custom_inputs if args.cancel_custom_inputs is not None
            else args.custom_inputs,
        )
        return run_all(client, report=print_result)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.url:
        print(f"checking {args.url}", flush=True)
        results = check_server(args.url.rstrip("/"), args)
        return 0 if all(r.ok for r in results) else 1

    log_path = args.log_file or Path(tempfile.mkstemp(prefix="preflight-server-", suffix=".log")[1])
    server = StartedServer(args.command or default_command(), args.port or free_port(), log_path)
    print(f"starting {shlex.join(server.command)} (log: {log_path})", flush=True)
    try:
        server.start()
    except OSError as exc:
        print_result(CheckResult("server starts", False, f"cannot run {server.command[0]}: {exc}"))
        return 1
    try:
        problem = server.wait_healthy(args.startup_timeout)
        results = [CheckResult("server starts", not problem, problem or server.base_url)]
        print_result(results[0])
        if not problem:
            results += check_server(server.base_url, args)
    finally:
        server.stop()
    if not all(r.ok for r in results):
        print(f"\nserver log ({log_path}), last lines:\n{server.log_tail()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
