"""What the LangGraph variant needs besides its graph: stream events, MCP, tools."""
