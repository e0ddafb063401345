"""This server process: MLflow and the agent imported after start-up, tracing warm-up, shutdown."""
