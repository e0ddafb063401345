"""Which MCP servers the agent uses, and how it authenticates to them.

Framework-neutral: ``mcp_openai.py`` and ``mcp_langchain.py`` turn these
settings into each SDK's MCP client. Settings (read once at start-up):

- ``MCP_SERVERS``: comma-separated ``name=url`` entries (the name is
  optional). A URL that starts with ``/`` is a path on the Databricks
  workspace, e.g. ``/api/2.0/mcp/functions/system/ai``,
  ``/api/2.0/mcp/genie/<space-id>`` or
  ``/api/2.0/mcp/vector-search/<catalog>/<schema>``.
- ``MCP_ON_BEHALF_OF_USER``: ``true`` to call Databricks MCP servers as the
  user who sent the request (their ``X-Forwarded-Access-Token``) instead of
  as the app's own identity.
- ``MCP_CONNECT_TIMEOUT_SECONDS`` (connect and list tools) and
  ``MCP_TOOL_TIMEOUT_SECONDS`` (one tool call).

Servers on the workspace (paths, the ``DATABRICKS_HOST`` host, Databricks
domains and Databricks Apps) get Databricks auth; any other URL gets none.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
from dataclasses import dataclass
from urllib.parse import urlparse

from mlflow.genai.agent_server import get_request_headers

logger = logging.getLogger(__name__)

# Hosts that speak Databricks auth: workspaces on each cloud and Databricks Apps.
_DATABRICKS_DOMAINS = (".databricks.com", ".azuredatabricks.net", ".databricksapps.com")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class McpSettingsError(ValueError):
    """An MCP setting is malformed (start-up stops with this message)."""


class McpUnavailable(Exception):
    """This run cannot use the server (the message says why, briefly)."""


@dataclass(frozen=True)
class McpServerSpec:
    """One configured MCP server. ``url`` may be a workspace path (``/api/...``)."""

    name: str
    url: str
    databricks_auth: bool


@dataclass(frozen=True)
class McpSettings:
    servers: tuple[McpServerSpec, ...] = ()
    on_behalf_of_user: bool = False
    connect_timeout: float = 20.0
    tool_timeout: float = 300.0


@dataclass(frozen=True)
class Unavailable:
    """A server left out of one run, and why."""

    name: str
    reason: str


def _normalized_host(host: str) -> str:
    host = host.strip().rstrip("/")
    return host if "://" in host else f"https://{host}"


def _default_name(url: str) -> str:
    path = urlparse(url).path
    tail = path.split("/api/2.0/mcp/", 1)[1] if "/api/2.0/mcp/" in path else (urlparse(url).netloc + path)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", tail).strip("-") or "mcp"


def _is_databricks_url(url: str, environ) -> bool:
    if url.startswith("/"):
        return True
    netloc = urlparse(url).netloc.lower()
    workspace = (environ.get("DATABRICKS_HOST") or "").strip()
    if workspace and urlparse(_normalized_host(workspace)).netloc.lower() == netloc:
        return True
    return urlparse(url).hostname is not None and urlparse(url).hostname.lower().endswith(_DATABRICKS_DOMAINS)


def _parse_server(entry: str, environ) -> McpServerSpec:
    name, sep, url = entry.partition("=")
    if not sep or "://" in name or name.startswith("/"):
        name, url = "", entry
    name, url = name.strip(), url.strip()
    parsed = urlparse(url)
    if not url.startswith("/") and (parsed.scheme not in ("http", "https") or not parsed.netloc):
        raise McpSettingsError(
            f"MCP_SERVERS entry {entry!r}: the URL must start with http://, https:// or / (a workspace path)"
        )
    name = name or _default_name(url)
    if not _NAME.match(name):
        raise McpSettingsError(f"MCP_SERVERS entry {entry!r}: name {name!r} may use letters, digits, '_', '.', '-'")
    return McpServerSpec(name, url, _is_databricks_url(url, environ))


def _seconds(environ, name: str, default: float) -> float:
    raw = (environ.get(name) or "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise McpSettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise McpSettingsError(f"{name} must be more than 0, got {raw!r}")
    return value


def mcp_settings(environ=os.environ) -> McpSettings:
    """The MCP settings from the environment; :class:`McpSettingsError` if malformed."""
    servers = [
        _parse_server(entry.strip(), environ)
        for entry in (environ.get("MCP_SERVERS") or "").split(",")
        if entry.strip()
    ]
    names = [server.name for server in servers]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise McpSettingsError(f"MCP_SERVERS names must be unique; repeated: {', '.join(duplicates)}")
    on_behalf = (environ.get("MCP_ON_BEHALF_OF_USER") or "").strip().lower()
    if on_behalf not in _TRUE | _FALSE:
        raise McpSettingsError(f"MCP_ON_BEHALF_OF_USER must be true or false, got {on_behalf!r}")
    return McpSettings(
        servers=tuple(servers),
        on_behalf_of_user=on_behalf in _TRUE,
        connect_timeout=_seconds(environ, "MCP_CONNECT_TIMEOUT_SECONDS", 20.0),
        tool_timeout=_seconds(environ, "MCP_TOOL_TIMEOUT_SECONDS", 300.0),
    )


def mcp_settings_at_startup() -> McpSettings:
    """:func:`mcp_settings`, stopping start-up with just the message if malformed."""
    try:
        return mcp_settings()
    except McpSettingsError as error:
        raise SystemExit(str(error)) from None


# ----- auth ---------------------------------------------------------------------

@functools.cache
def _app_workspace_client():
    """The app's own identity (service principal on Databricks Apps), made once."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient()


def _forwarded_token() -> str | None:
    headers = {key.lower(): value for key, value in (get_request_headers() or {}).items()}
    return headers.get("x-forwarded-access-token") or None


async def workspace_client(settings: McpSettings):
    """The ``WorkspaceClient`` this run calls Databricks MCP servers with.

    With ``MCP_ON_BEHALF_OF_USER`` it carries the caller's forwarded token; a
    request without one (a local call, or an attempt resumed after a crash:
    tokens are never stored) cannot use those servers.
    """
    from databricks.sdk import WorkspaceClient

    # The SDK resolves config (and may probe the host) synchronously: keep it off the event loop.
    app_client = await asyncio.to_thread(_app_workspace_client)
    if not settings.on_behalf_of_user:
        return app_client
    token = _forwarded_token()
    if not token:
        raise McpUnavailable("no X-Forwarded-Access-Token on this request, and MCP_ON_BEHALF_OF_USER is on")
    return await asyncio.to_thread(WorkspaceClient, host=app_client.config.host, token=token, auth_type="pat")


def resolved_url(spec: McpServerSpec, client) -> str:
    """``spec.url`` with a workspace path joined to the workspace host."""
    if spec.url.startswith("/"):
        return _normalized_host(client.config.host) + spec.url
    return spec.url


def reason_of(error: BaseException) -> str:
    """A one-line reason for a failed check (the innermost error of a group)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, TimeoutError):
        return "no answer in time"
    text = " ".join(str(error).split()) or type(error).__name__
    return (text[:200] + "…") if len(text) > 200 else text


def log_unavailable(item: Unavailable) -> None:
    logger.warning("MCP server %s left out of this run: %s", item.name, item.reason)


def unavailable_note(unavailable: list[Unavailable]) -> str:
    """What the response tells the user about servers this run could not use."""
    parts = "; ".join(f"{item.name} ({item.reason})" for item in unavailable)
    plural = "s" if len(unavailable) > 1 else ""
    return f"Note: MCP server{plural} unavailable, answering without {'their' if plural else 'its'} tools: {parts}."


def note_events(unavailable: list[Unavailable], item_id: str) -> list[dict]:
    """The note as one streamed assistant message (a delta and its done item)."""
    from mlflow.types.responses import create_text_delta, create_text_output_item

    if not unavailable:
        return []
    text = unavailable_note(unavailable)
    return [
        create_text_delta(delta=text, item_id=item_id),
        {"type": "response.output_item.done", "item": create_text_output_item(text=text, id=item_id)},
    ]
