"""Memory under clients that open a background stream and read nothing (figure ``slow_readers``).

25 raw sockets (10 with ``--quick``), each with a 4 KiB receive buffer, send
``POST /responses {background: true, stream: true}`` for a run of 20,000 deltas
(about 5.5 MB of events each) and never read. The server's RSS is sampled
until every run has ended; the figure is its growth against the bytes the
clients left unread (everything the runs stored).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import psutil

FIGURE = "slow_readers"
TARGET = ("unread streams: RSS growth", "<= 2x unread data",
          lambda f: f["rss_growth_per_unread_mib"] <= 2)
DELTAS = 20_000


def measured(f: dict[str, Any]) -> str:
    return (f"{f['streams']} streams, {f['unread_mib']} MiB unread: RSS +{f['rss_growth_mib']} MiB "
            f"(x{f['rss_growth_per_unread_mib']})")


def run(ctx, server) -> dict[str, Any]:
    streams = 10 if ctx.quick else 25
    process = psutil.Process(server.proc.pid)
    idle = _rss(process)
    address = urlsplit(server.base_url)
    body = json.dumps({"input": "slow", "background": True, "stream": True, "custom_inputs": {"deltas": DELTAS}})
    request = (f"POST /responses HTTP/1.1\r\nHost: {address.hostname}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
    sockets = []
    try:
        for _ in range(streams):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((address.hostname, address.port))
            sock.sendall(request)
            sockets.append(sock)
        ours = (f"FROM {server.schema}.responses WHERE request->'custom_inputs'->>'deltas' = '{DELTAS}'")
        peak, deadline = idle, time.monotonic() + 300
        while time.monotonic() < deadline:
            peak = max(peak, _rss(process))
            stored, running = ctx.pg.conn.execute(
                f"SELECT count(*), count(*) FILTER (WHERE status IN ('queued', 'in_progress')) {ours}").fetchone()
            if stored == streams and running == 0:
                break
            time.sleep(0.1)
        unread = ctx.pg.conn.execute(f"SELECT coalesce(sum(length(data)), 0) FROM {server.schema}.events "
                                     f"WHERE response_id IN (SELECT response_id {ours})").fetchone()[0]
    finally:
        for sock in sockets:
            sock.close()
    growth = (peak - idle) / 2**20
    return {"streams": streams, "deltas_per_stream": DELTAS, "unread_mib": round(unread / 2**20, 1),
            "idle_rss_mib": round(idle / 2**20, 1), "peak_rss_mib": round(peak / 2**20, 1),
            "rss_growth_mib": round(growth, 1), "rss_growth_per_unread_mib": round(growth / (unread / 2**20), 2)}


def _rss(process: psutil.Process) -> int:
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
