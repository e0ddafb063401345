"""discover-tools against a fake Databricks workspace (a local HTTP server the
real ``databricks-sdk`` talks to), and the code it prints run against a real
MCP server (the ``mcp`` package's FastMCP on 127.0.0.1) with the real
OpenAI Agents SDK and LangGraph clients."""

from __future__ import annotations

import asyncio
import copy
import json
import threading

import pytest
import yaml

from scripts import discover_tools

from .support import FAKE_TOKEN, PROJECT_ROOT, FakeWorkspaceServer, free_port, point_sdk_at

pytestmark = pytest.mark.timeout(60)

USER = "dev@example.com"


class ToolsWorkspace:
    """The listings discover-tools reads, plus a record of every request."""

    def __init__(self, mcp_app_url: str = "https://mcp-weather-123.aws.databricksapps.com") -> None:
        self.requests: list[tuple[str, str]] = []
        self.refuse: dict[str, tuple[int, str]] = {}  # path -> (status, error_code)
        self.catalogs = ["main", "restricted", "system", "__databricks_internal"]
        self.schemas = {"main": ["tools", "private", "information_schema"], "system": ["ai"]}
        self.functions = {
            ("main", "tools"): [("lookup_customer", "Looks up a customer by id")],
            ("system", "ai"): [("python_exec", None)],
        }
        self.apps = [
            {"name": "mcp-weather", "url": mcp_app_url, "description": "Weather tools",
             "app_status": {"state": "RUNNING"}},
            {"name": "docs-server", "url": "https://docs-server-1.aws.databricksapps.com",
             "description": "An MCP server over our docs", "app_status": {"state": "RUNNING"}},
            {"name": "durable-agent-openai", "url": "https://durable-agent-openai-1.aws.databricksapps.com",
             "description": "Long-running agent", "app_status": {"state": "RUNNING"}},
        ]

    def handle(self, method, path, query, body, auth):
        self.requests.append((method, path))
        if path.startswith("/api/") and auth != f"Bearer {FAKE_TOKEN}":
            return 401, {"error_code": "UNAUTHENTICATED", "message": "invalid access token"}
        if path in self.refuse:
            status, code = self.refuse[path]
            return status, {"error_code": code, "message": f"{path} refused by the test"}
        if method != "GET":
            return 405, {"error_code": "BAD_REQUEST", "message": "discover-tools must only read"}
        arg = lambda name: query.get(name, [None])[0]  # noqa: E731
        if path == "/.well-known/databricks-config":
            return 200, {"oidc_endpoint": "http://127.0.0.1/oidc"}
        if path == "/api/2.0/preview/scim/v2/Me":
            return 200, {"userName": USER, "id": "1"}
        if path == "/api/2.1/unity-catalog/catalogs":
            return 200, {"catalogs": [{"name": c} for c in self.catalogs]}
        if path == "/api/2.1/unity-catalog/schemas" and arg("catalog_name") == "restricted":
            return 403, {"error_code": "PERMISSION_DENIED", "message": "no USE CATALOG on restricted"}
        if path == "/api/2.1/unity-catalog/schemas":
            return 200, {"schemas": [{"name": s, "catalog_name": arg("catalog_name")}
                                     for s in self.schemas.get(arg("catalog_name"), [])]}
        if path == "/api/2.1/unity-catalog/functions":
            cat, sch = arg("catalog_name"), arg("schema_name")
            if sch == "private":
                return 403, {"error_code": "PERMISSION_DENIED", "message": "no USE SCHEMA on main.private"}
            return 200, {"functions": [
                {"name": n, "full_name": f"{cat}.{sch}.{n}", "catalog_name": cat, "schema_name": sch,
                 **({"comment": c} if c else {})}
                for n, c in self.functions.get((cat, sch), [])
            ]}
        if path == "/api/2.0/vector-search/endpoints":
            return 200, {"endpoints": [{"name": "vs-endpoint"}]}
        if path == "/api/2.0/vector-search/indexes":
            assert arg("endpoint_name") == "vs-endpoint"
            return 200, {"vector_indexes": [{"name": "main.docs.handbook_index", "endpoint_name": "vs-endpoint",
                                             "index_type": "DELTA_SYNC", "primary_key": "id"}]}
        if path == "/api/2.0/genie/spaces":
            # Two pages: the second is only reached by following the token.
            if arg("page_token") == "page-2":
                return 200, {"spaces": [{"space_id": "01f0b", "title": "Support tickets"}]}
            return 200, {"spaces": [{"space_id": "01f0a", "title": "Sales & revenue", "description": "Quarterly"}],
                         "next_page_token": "page-2"}
        if path == "/api/2.0/apps":
            return 200, {"apps": self.apps}
        if path == "/api/2.1/unity-catalog/connections":
            return 200, {"connections": [
                {"name": "github_mcp", "full_name": "github_mcp", "connection_type": "HTTP",
                 "options": {"host": "https://api.githubcopilot.com", "is_mcp_connection": "true"}},
                {"name": "crm_api", "full_name": "crm_api", "connection_type": "HTTP", "comment": "CRM REST API",
                 "options": {"host": "https://crm.example.com"}},
            ]}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"fake workspace has no {method} {path}"}


@pytest.fixture
def no_env_file(monkeypatch):
    monkeypatch.setenv("AGENT_SERVER_ENV_FILE", "")


def serve(monkeypatch, tmp_path, state: ToolsWorkspace):
    server = FakeWorkspaceServer(state.handle)
    point_sdk_at(monkeypatch, server.host, tmp_path)
    return server


def run_json(capsys, *args: str) -> dict:
    assert discover_tools.main(["--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_lists_every_kind_with_resources_that_the_bundle_accepts(monkeypatch, tmp_path, capsys, no_env_file):
    state = ToolsWorkspace()
    with serve(monkeypatch, tmp_path, state) as server:
        out = run_json(capsys)
    found = out["found"]
    assert out["user"] == USER and out["host"] == server.host and out["skipped"] == {}

    # Catalogs and schemas you may not browse, information_schema and internal catalogs are passed over.
    assert [f["name"] for f in found["uc_function"]] == ["main.tools.lookup_customer", "system.ai.python_exec"]
    assert ("GET", "/api/2.1/unity-catalog/functions") in state.requests
    lookup = found["uc_function"][0]
    assert lookup["description"] == "Looks up a customer by id"
    assert lookup["mcp_path"] == "/api/2.0/mcp/functions/main/tools/lookup_customer"
    assert lookup["resource"]["uc_securable"] == {
        "securable_full_name": "main.tools.lookup_customer", "securable_type": "FUNCTION", "permission": "EXECUTE"}

    (index,) = found["vector_search_index"]
    assert index["mcp_path"] == "/api/2.0/mcp/vector-search/main/docs/handbook_index"
    assert index["resource"]["uc_securable"]["securable_type"] == "TABLE"

    assert [g["name"] for g in found["genie_space"]] == ["Sales & revenue", "Support tickets"]
    assert found["genie_space"][0]["resource"]["genie_space"] == {
        "name": "Sales & revenue", "space_id": "01f0a", "permission": "CAN_RUN"}

    assert [a["name"] for a in found["mcp_app"]] == ["mcp-weather", "docs-server"]  # not the agent app
    assert found["mcp_app"][0]["mcp_url"] == "https://mcp-weather-123.aws.databricksapps.com/mcp"
    assert found["mcp_app"][0]["resource"]["app"] == {"name": "mcp-weather", "permission": "CAN_USE"}

    github, crm = found["uc_connection"]
    assert github["mcp_path"] == "/api/2.0/mcp/external/github_mcp"
    assert crm["mcp_path"] is None and crm["openai_snippet"] is None and "not an MCP server" in crm["note"]

    every = [f for items in found.values() for f in items]
    for f in every:  # the printed YAML is the resource
        assert yaml.safe_load(f["resource_yaml"]) == [f["resource"]]
    names = [f["resource"]["name"] for f in every]
    assert len(set(names)) == len(names)

    # Pasted under both apps, the bundle still loads and validates.
    from databricks.bundles.apps import App

    from .support import SCHEMA_PATH, schema_errors

    bundle = yaml.safe_load((PROJECT_ROOT / "databricks.yml").read_text())
    for app in bundle["resources"]["apps"].values():
        app["resources"] += [copy.deepcopy(f["resource"]) for f in every]
        App.from_dict(app)
    if SCHEMA_PATH.is_file():
        assert schema_errors(bundle) == []
        broken = copy.deepcopy(bundle)
        broken["resources"]["apps"]["agent_openai"]["resources"][-1]["uc_securable"]["permission"] = "USE"
        assert schema_errors(broken) != []  # the check can fail


def test_workspace_snippets_build_clients_for_the_printed_urls(monkeypatch, tmp_path, capsys, no_env_file):
    from databricks_langchain import DatabricksMCPServer
    from databricks_openai.agents import McpServer

    with serve(monkeypatch, tmp_path, ToolsWorkspace()) as server:
        found = run_json(capsys)["found"]
        checked = 0
        for item in (f for items in found.values() for f in items if f["openai_snippet"]):
            expected = item["mcp_url"] or server.host + item["mcp_path"]
            namespace: dict = {}
            exec(item["openai_snippet"], namespace)  # the code as printed
            factory = next(v for k, v in namespace.items() if callable(v) and k == item["resource"]["name"].replace("-", "_"))
            openai_server = factory()
            assert isinstance(openai_server, McpServer) and openai_server.params["url"] == expected
            assert factory() is not openai_server  # one connection per run

            namespace = {}
            exec(item["langgraph_snippet"], namespace)
            (lg_server,) = [v for v in namespace.values() if isinstance(v, DatabricksMCPServer)]
            assert lg_server.url == expected
            checked += 1
    assert checked == 8  # 2 functions, 1 index, 2 Genie spaces, 2 apps, 1 MCP connection


def test_printed_code_lists_and_calls_tools_of_a_real_mcp_server(monkeypatch, tmp_path, capsys, no_env_file):
    import uvicorn
    from mcp.server.fastmcp import FastMCP

    seen_auth: list[str] = []
    mcp = FastMCP("weather", stateless_http=True)

    @mcp.tool()
    def forecast(city: str) -> str:
        """Tomorrow's weather for a city."""
        return f"sunny in {city}"

    inner = mcp.streamable_http_app()

    async def app(scope, receive, send):  # records the credentials the clients send
        if scope["type"] == "http":
            seen_auth.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        await inner(scope, receive, send)

    port = free_port()
    mcp_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=mcp_server.run, daemon=True)
    thread.start()
    try:
        while not mcp_server.started:
            thread.join(0.05)
        state = ToolsWorkspace(mcp_app_url=f"http://127.0.0.1:{port}")
        with serve(monkeypatch, tmp_path, state):
            found = run_json(capsys, "--kind", "mcp_app")["found"]
            weather = found["mcp_app"][0]

            async def use_printed_code():
                namespace: dict = {}
                exec(weather["openai_snippet"], namespace)
                async with namespace["mcp_weather"]() as server:
                    tools = [t.name for t in await server.list_tools()]
                    called = await server.call_tool("forecast", {"city": "Oslo"})
                namespace = {}
                exec(weather["langgraph_snippet"], namespace)
                client = namespace["DatabricksMultiServerMCPClient"]([namespace["mcp_weather"]])
                (lg_tool,) = await client.get_tools()
                return tools, called.content[0].text, lg_tool.name, await lg_tool.ainvoke({"city": "Rome"})

            tools, openai_answer, lg_name, lg_answer = asyncio.run(use_printed_code())
    finally:
        mcp_server.should_exit = True
        thread.join(10)
    assert tools == ["forecast"] and openai_answer == "sunny in Oslo"
    assert lg_name == "forecast" and "sunny in Rome" in str(lg_answer)
    assert seen_auth and set(seen_auth) == {f"Bearer {FAKE_TOKEN}"}  # the workspace credentials


def test_a_refused_kind_is_reported_and_the_rest_still_listed(monkeypatch, tmp_path, capsys, no_env_file):
    state = ToolsWorkspace()
    state.refuse["/api/2.0/genie/spaces"] = (404, "FEATURE_DISABLED")
    with serve(monkeypatch, tmp_path, state):
        assert discover_tools.main(["--kind", "genie_space", "--kind", "uc_connection"]) == 0
    text = capsys.readouterr().out
    assert "== Genie spaces: skipped (" in text and "refused by the test" in text
    assert "== Unity Catalog connections (2)" in text
    assert "securable_type: CONNECTION" in text
    assert "Vector Search" not in text  # only the kinds asked for
    assert not any(p.startswith("/api/2.0/vector-search") for _, p in state.requests)


def test_limits_catalog_filter_and_text_output(monkeypatch, tmp_path, capsys, no_env_file):
    state = ToolsWorkspace()
    with serve(monkeypatch, tmp_path, state):
        assert discover_tools.main(["--kind", "uc_function", "--catalog", "system", "--limit", "5"]) == 0
        text = capsys.readouterr().out
        assert discover_tools.main(["--kind", "genie_space", "--limit", "1"]) == 0
        limited = capsys.readouterr().out
    assert "-- system.ai.python_exec" in text and "main.tools" not in text
    assert "from databricks_openai.agents import McpServer" in text
    assert '{WorkspaceClient().config.host}/api/2.0/mcp/functions/system/ai/python_exec' in text
    assert "== Genie spaces (1) (more exist: raise --limit)" in limited
    assert all(method == "GET" for method, _ in state.requests)  # read only


def test_not_authenticated_is_a_clear_error(monkeypatch, tmp_path, capsys, no_env_file):
    with serve(monkeypatch, tmp_path, ToolsWorkspace()):
        monkeypatch.setenv("DATABRICKS_TOKEN", "expired")
        assert discover_tools.main([]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: cannot reach http://127.0.0.1:")
    assert "databricks auth login" in captured.err and "--profile" in captured.err

    # No credentials anywhere.
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert discover_tools.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no Databricks credentials found") and "databricks auth login" in err


def test_reads_the_host_from_env_file(monkeypatch, tmp_path, capsys):
    state = ToolsWorkspace()
    with serve(monkeypatch, tmp_path, state) as server:
        monkeypatch.delenv("DATABRICKS_HOST")
        env = tmp_path / ".env"
        env.write_text(f"DATABRICKS_CONFIG_PROFILE=\nDATABRICKS_HOST={server.host}\n")
        monkeypatch.setenv("AGENT_SERVER_ENV_FILE", str(env))
        out = run_json(capsys, "--kind", "mcp_app")
    assert out["host"] == server.host and len(out["found"]["mcp_app"]) == 2


def test_bad_options(capsys, no_env_file):
    assert discover_tools.main(["--schema", "tools"]) == 2
    assert "--schema needs --catalog" in capsys.readouterr().err
    assert discover_tools.main(["--limit", "0"]) == 2
    with pytest.raises(SystemExit):
        discover_tools.main(["--kind", "tables"])
