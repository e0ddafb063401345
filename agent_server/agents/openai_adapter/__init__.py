"""What the OpenAI Agents SDK variant needs besides its agent: stream events, MCP, tools."""
