"""The agent's web page, served by the server itself at ``/``.

Plain files inside the package (no build step, nothing fetched at start-up):
``static/index.html`` at ``/`` and its scripts and styles under ``/web/``.
Only the files listed here are served, read once at import.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

_STATIC = Path(__file__).parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# Defence in depth behind the page's own escaping: no inline script, nothing from elsewhere.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'")


class _File:
    def __init__(self, name: str):
        self.body = (_STATIC / name).read_bytes()
        self.media_type = _TYPES[Path(name).suffix]
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'

    def response(self, request: Request) -> Response:
        # no-cache: the browser revalidates (a 304 costs nothing), so an upgrade shows at once.
        headers = {"ETag": self.etag, "Cache-Control": "no-cache", "Content-Security-Policy": _CSP,
                   "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


ASSETS = ("app.js", "dom.js", "markdown.js", "memory.js", "style.css", "icon.svg")


def install_web_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets at ``/web/<name>``."""
    index = _File("index.html")
    assets = {name: _File(name) for name in ASSETS}

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        return index.response(request)

    for name, file in assets.items():
        app.add_api_route(f"/web/{name}", _asset_route(file), methods=["GET"], include_in_schema=False)


def _asset_route(file: _File):
    async def asset(request: Request) -> Response:
        return file.response(request)
    return asset
