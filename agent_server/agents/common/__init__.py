"""What both agent variants share: model choice, MCP settings, request input, the offline model."""
