"""What the routes are given by the server: settings, the engine connection, the agent runtime, memory."""

from __future__ import annotations

from dataclasses import dataclass

from ..memory.access import MemoryGate
from ..process.agent_runtime import AgentRuntime
from ..process.engine import EngineConnection
from ..process.tracing import TracingWarmUp
from ..runs.attempt import Handler
from ..settings import EngineSettings


@dataclass(frozen=True)
class RouteContext:
    settings: EngineSettings
    engines: EngineConnection
    runtime: AgentRuntime
    tracing: TracingWarmUp
    handler: Handler  # runs an attempt's handler (unstored runs call it directly)
    model_name: str
    memory: MemoryGate  # each caller's own long-term memory
