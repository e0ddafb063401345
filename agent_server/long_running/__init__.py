"""Durable long-running agent server on Postgres.

Switch from databricks-ai-bridge by changing one import::

    from agent_server.long_running import LongRunningAgentServer
"""

from .server import LongRunningAgentServer
from .settings import EngineSettings

__all__ = ["LongRunningAgentServer", "EngineSettings"]
