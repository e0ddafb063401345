"""Tool calls recorded per response, and ``@durable_tool``."""
