"""What a workspace offers an agent as tools, asked through ``databricks-sdk``.

Each ``find_*`` function lists one kind of thing and describes every item as
a :class:`Found`: what it is, the entry that grants an app access to it (for
``resources:`` in databricks.yml) and where its MCP server is. Only reads:
nothing in the workspace changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, PermissionDenied

# Schemas that hold the system's own objects, never an agent's tools.
SKIPPED_CATALOGS = {"__databricks_internal"}
SKIPPED_SCHEMAS = {"information_schema"}


@dataclass(frozen=True)
class Found:
    """One thing an agent can use."""

    kind: str  # a key of KINDS
    name: str  # the full name users know it by
    description: str
    resource: dict  # one entry of an app's `resources:` list in databricks.yml
    # Where its MCP server answers: a path on the workspace host, or a full URL
    # (MCP apps have their own host). Neither for a connection that is not MCP.
    mcp_path: str | None = None
    mcp_url: str | None = None
    note: str = ""


@dataclass
class Discovery:
    """All that was found, per kind, and why a kind (or part of it) was skipped."""

    found: dict[str, list[Found]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    truncated: dict[str, bool] = field(default_factory=dict)


def resource_name(prefix: str, name: str) -> str:
    """A short, readable resource name: lowercase letters, digits and hyphens."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug.startswith(f"{prefix}-"):  # "mcp-weather", not "mcp-mcp-weather"
        slug = f"{prefix}-{slug}"
    return slug[:60].rstrip("-")


# ------------------------------------------------------------------- kinds


def find_uc_functions(
    w: WorkspaceClient, *, catalog: str | None = None, schema: str | None = None, max_schemas: int = 50
) -> Iterator[Found]:
    """Unity Catalog functions, schema by schema (at most ``max_schemas`` schemas)."""
    catalogs = [catalog] if catalog else [c.name for c in w.catalogs.list() if c.name not in SKIPPED_CATALOGS]
    searched = 0
    for cat in catalogs:
        try:
            schemas = [schema] if schema else [s.name for s in w.schemas.list(catalog_name=cat)]
        except PermissionDenied:
            continue  # a catalog you may not browse holds no tools for you
        for sch in schemas:
            if sch in SKIPPED_SCHEMAS:
                continue
            if searched >= max_schemas:
                return
            searched += 1
            try:
                functions = list(w.functions.list(catalog_name=cat, schema_name=sch))
            except PermissionDenied:
                continue  # a schema you may not browse holds no tools for you
            for fn in functions:
                yield Found(
                    kind="uc_function",
                    name=fn.full_name,
                    description=fn.comment or "",
                    resource={
                        "name": resource_name("fn", fn.full_name),
                        "uc_securable": {
                            "securable_full_name": fn.full_name,
                            "securable_type": "FUNCTION",
                            "permission": "EXECUTE",
                        },
                    },
                    mcp_path=f"/api/2.0/mcp/functions/{cat}/{sch}/{fn.name}",
                )


def find_vector_search_indexes(w: WorkspaceClient) -> Iterator[Found]:
    """Vector Search indexes on every endpoint."""
    for endpoint in w.vector_search_endpoints.list_endpoints():
        for index in w.vector_search_indexes.list_indexes(endpoint_name=endpoint.name):
            index_type = index.index_type.value if index.index_type else "index"
            yield Found(
                kind="vector_search_index",
                name=index.name,
                description=f"{index_type} on endpoint {endpoint.name}",
                resource={
                    "name": resource_name("index", index.name),
                    # An index is a Unity Catalog table to the permission model.
                    "uc_securable": {
                        "securable_full_name": index.name,
                        "securable_type": "TABLE",
                        "permission": "SELECT",
                    },
                },
                mcp_path="/api/2.0/mcp/vector-search/" + "/".join(index.name.split(".")),
            )


def find_genie_spaces(w: WorkspaceClient) -> Iterator[Found]:
    """Genie spaces (the API pages them by token)."""
    token = None
    while True:
        page = w.genie.list_spaces(page_token=token)
        for space in page.spaces or []:
            yield Found(
                kind="genie_space",
                name=space.title,
                description=space.description or "",
                resource={
                    "name": resource_name("genie", space.title),
                    "genie_space": {"name": space.title, "space_id": space.space_id, "permission": "CAN_RUN"},
                },
                mcp_path=f"/api/2.0/mcp/genie/{space.space_id}",
                note=f"space id {space.space_id}",
            )
        token = page.next_page_token
        if not token:
            return


def is_mcp_app(name: str, description: str) -> bool:
    """Apps do not declare what they serve; by convention an MCP server's
    name starts with ``mcp-``, or its description says MCP."""
    return name.startswith("mcp-") or bool(re.search(r"\bmcp\b", description, re.IGNORECASE))


def find_mcp_apps(w: WorkspaceClient) -> Iterator[Found]:
    """Databricks Apps that serve MCP (at ``<app url>/mcp``)."""
    for app in w.apps.list():
        description = app.description or ""
        if not is_mcp_app(app.name, description):
            continue
        state = app.app_status.state.value if app.app_status and app.app_status.state else "unknown"
        note = f"app state {state}"
        if not app.url:
            note += "; no URL yet (the app was never started)"
        yield Found(
            kind="mcp_app",
            name=app.name,
            description=description,
            resource={"name": resource_name("mcp", app.name), "app": {"name": app.name, "permission": "CAN_USE"}},
            mcp_url=f"{app.url.rstrip('/')}/mcp" if app.url else None,
            note=note,
        )


def find_uc_connections(w: WorkspaceClient) -> Iterator[Found]:
    """Unity Catalog connections; those marked as MCP are external MCP servers."""
    for conn in w.connections.list():
        options = conn.options or {}
        is_mcp = options.get("is_mcp_connection") == "true"
        kind = conn.connection_type.value if conn.connection_type else "connection"
        yield Found(
            kind="uc_connection",
            name=conn.name,
            description=conn.comment or "",
            resource={
                "name": resource_name("conn", conn.name),
                "uc_securable": {
                    "securable_full_name": conn.name,
                    "securable_type": "CONNECTION",
                    "permission": "USE_CONNECTION",
                },
            },
            mcp_path=f"/api/2.0/mcp/external/{conn.name}" if is_mcp else None,
            note=(
                f"{kind}, external MCP server"
                if is_mcp
                else f"{kind}, not an MCP server: call it from a UC function (SQL http_request)"
            ),
        )


# ----------------------------------------------------------------- together

# kind -> (heading, finder taking the client and the options)
KINDS: dict[str, tuple[str, Callable[..., Iterator[Found]]]] = {
    "uc_function": ("Unity Catalog functions", find_uc_functions),
    "vector_search_index": ("Vector Search indexes", find_vector_search_indexes),
    "genie_space": ("Genie spaces", find_genie_spaces),
    "mcp_app": ("MCP servers on Databricks Apps", find_mcp_apps),
    "uc_connection": ("Unity Catalog connections", find_uc_connections),
}


def discover(
    w: WorkspaceClient,
    kinds: list[str] | None = None,
    *,
    limit: int = 50,
    catalog: str | None = None,
    schema: str | None = None,
    max_schemas: int = 50,
) -> Discovery:
    """Up to ``limit`` items of each kind. A kind the workspace refuses (not
    enabled, no permission) is recorded in ``skipped`` and the rest go on."""
    result = Discovery()
    for kind in kinds or list(KINDS):
        finder = KINDS[kind][1]
        options = {"catalog": catalog, "schema": schema, "max_schemas": max_schemas} if kind == "uc_function" else {}
        try:
            items = list(islice(finder(w, **options), limit + 1))
        except DatabricksError as exc:
            result.skipped[kind] = f"{type(exc).__name__}: {exc}"
            continue
        result.found[kind] = items[:limit]
        result.truncated[kind] = len(items) > limit
    return result
