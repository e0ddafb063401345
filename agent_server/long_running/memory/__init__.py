"""Long-term memory: what the agent keeps about a person across conversations, and who may see it."""
