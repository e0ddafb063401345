"""How to wire a discovered tool into this project: the databricks.yml
resource entry and the Python that connects each agent variant to its MCP
server.

The snippets only construct the MCP server object (no network yet), so they
run as printed; the comment under each says where it goes in the agent.
"""

from __future__ import annotations

import json

from .tool_discovery import Found


def _yaml_scalar(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar; plain when that is safe.
    plain = value.replace("-", "").replace("_", "").replace(".", "").isalnum() and not value[0].isdigit()
    return value if plain else json.dumps(value)


def resource_yaml(found: Found) -> str:
    """The resource as YAML list item, ready to paste under an app's ``resources:``."""
    entry = dict(found.resource)
    lines = [f"- name: {_yaml_scalar(entry.pop('name'))}"]
    for key, body in entry.items():
        lines.append(f"  {key}:")
        lines.extend(f"    {field}: {_yaml_scalar(str(value))}" for field, value in body.items())
    return "\n".join(lines)


def _url_lines(found: Found) -> tuple[list[str], str]:
    """Setup lines and the expression of the server URL."""
    if found.mcp_url:
        return [], json.dumps(found.mcp_url)
    # The host comes from the SDK's configuration, so the same code runs
    # locally (your profile) and in the app (the platform sets DATABRICKS_HOST).
    setup = ["from databricks.sdk import WorkspaceClient", ""]
    return setup, 'f"{WorkspaceClient().config.host}' + found.mcp_path + '"'


def identifier(found: Found) -> str:
    """A Python name for the snippet's object, unique per resource name."""
    return found.resource["name"].replace("-", "_")


def openai_snippet(found: Found) -> str | None:
    """For agent_server/agents/openai_agent.py (OpenAI Agents SDK).

    A factory, not an object: an ``McpServer`` holds one connection, so each
    run opens its own.
    """
    if not (found.mcp_path or found.mcp_url):
        return None
    setup, url = _url_lines(found)
    imports = [line for line in setup if line] + ["from databricks_openai.agents import McpServer", "", ""]
    name = identifier(found)
    return "\n".join(
        imports
        + [
            f"def {name}() -> McpServer:",
            f"    return McpServer(url={url}, name={json.dumps(found.resource['name'])})",
            "",
            "",
            f"# One per run, in stream_handler: `async with {name}() as server:` around the run,",
            "# with Agent(..., mcp_servers=[server]) (create_agent builds the Agent).",
        ]
    )


def langgraph_snippet(found: Found) -> str | None:
    """For agent_server/agents/langgraph_agent.py (LangGraph)."""
    if not (found.mcp_path or found.mcp_url):
        return None
    setup, url = _url_lines(found)
    imports = [line for line in setup if line] + [
        "from databricks_langchain import DatabricksMCPServer, DatabricksMultiServerMCPClient",
        "",
    ]
    name = identifier(found)
    return "\n".join(
        imports
        + [
            f"{name} = DatabricksMCPServer(name={json.dumps(found.resource['name'])}, url={url})",
            f"# Its tools: `await DatabricksMultiServerMCPClient([{name}]).get_tools()`; pass them",
            "# with the local tools to bind_tools and ToolNode (build_graph then becomes async).",
        ]
    )
