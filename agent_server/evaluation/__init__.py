"""``uv run agent-evaluate``: MLflow GenAI evaluation of the agent on a small dataset."""
