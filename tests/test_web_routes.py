"""The page's routes without a browser: what is served, its weight, and that
``enable_chat_proxy=True`` leaves ``/`` to upstream's chat app (a real local
HTTP server standing in for it)."""

from __future__ import annotations

import http.server
import threading

import pytest
from fastapi.testclient import TestClient

from agent_server.long_running import LongRunningAgentServer
from agent_server.web import ASSETS, _STATIC
from tests.support import free_port


def test_page_and_assets_are_served_with_a_strict_policy():
    app = LongRunningAgentServer("ResponsesAgent", database_url="postgresql://unused/db").app
    client = TestClient(app)  # no lifespan: the page needs no database
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    # Relative URLs only, so the page works under any path prefix.
    assert 'src="web/app.js"' in page.text and 'href="web/style.css"' in page.text
    for name in ASSETS:
        response = client.get(f"/web/{name}")
        assert response.status_code == 200 and response.content == (_STATIC / name).read_bytes()
        again = client.get(f"/web/{name}", headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
    assert client.get("/web/../server.py").status_code == 404
    assert client.get("/web/other.js").status_code == 404


def test_the_page_weighs_well_under_200_kb():
    total = sum((_STATIC / name).stat().st_size for name in ("index.html", *ASSETS))
    assert total < 100_000, total


class _UpstreamChat(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        body = b"upstream chat app"
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream_chat(monkeypatch):
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _UpstreamChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CHAT_APP_PORT", str(port))
    yield
    server.shutdown()
    server.server_close()


def test_chat_proxy_leaves_the_root_to_upstreams_chat_app(upstream_chat):
    app = LongRunningAgentServer("ResponsesAgent", enable_chat_proxy=True, database_url="postgresql://unused/db").app
    client = TestClient(app)
    assert client.get("/").text == "upstream chat app"
    assert client.get("/web/app.js").status_code == 404  # not ours, and not a path the proxy forwards
    paths = {getattr(route, "path", None) for route in app.router.routes}
    assert "/responses" in paths and "/" not in paths  # the list endpoint stays
