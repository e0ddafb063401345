"""Validated settings of the long-running engine.

Every value is checked once, here, so the rest of the engine can trust it.
The schema name is the only configuration that reaches SQL text, so it is
checked against a strict identifier pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

# Lowercase so it needs no quoting surprises; 40 characters so that derived
# channel names (schema + suffix) stay under Postgres' 63-byte identifier limit.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")

#: What a message does while its conversation's previous response still runs: wait behind it,
#: be refused (409), or cancel it.
MULTITASK_STRATEGIES = ("enqueue", "reject", "interrupt")


def check_schema_name(name: object) -> str:
    """``name`` if it is a valid engine schema name; else ValueError saying the rule."""
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise ValueError(
            f"db_schema must be a lowercase SQL identifier of at most 40 characters "
            f"(letters, digits, underscores, not starting with a digit), got {name!r}"
        )
    return name


@dataclass(frozen=True)
class EngineSettings:
    """Timing, capacity and storage settings; see docs/server-settings.md."""

    task_timeout_seconds: float = 3600.0
    poll_interval_seconds: float = 1.0
    db_statement_timeout_ms: int = 5000
    heartbeat_interval_seconds: float = 3.0
    heartbeat_stale_threshold_seconds: float = 10.0
    max_concurrent_tasks: int = 100
    db_schema: str = "agent_server"
    retention_seconds: float = 7 * 24 * 3600.0
    stale_scan_interval_seconds: float = 1.0
    max_request_bytes: int = 10 * 1024 * 1024
    # How long an attempt keeps retrying a failed database write before it
    # gives up and leaves the run to be resumed once the database is back.
    db_retry_seconds: float = 30.0
    # How long a request waits for the database before answering 503 (and a
    # live stream before ending with an error frame).
    db_request_timeout_seconds: float = 2.0
    # How long the process may take to exit after SIGTERM, open streams or not.
    shutdown_timeout_seconds: float = 5.0
    # Accepted for compatibility with databricks-ai-bridge; this engine's shutdown is bounded
    # by shutdown_timeout_seconds.
    cleanup_timeout_seconds: float = 7.0
    db_pool_max_size: int = 10
    # The default of the per-request multitask_strategy field.
    multitask_strategy: str = "enqueue"
    # Long-term memory: the longest memory, in characters, and how many one identity may keep.
    memory_max_chars: int = 2000
    memory_max_per_identity: int = 1000
    # A Databricks embedding endpoint: semantic memory search besides full text (needs pgvector).
    memory_embedding_endpoint: str | None = None
    # Bytes of recorded model calls kept per response (the journal a resumed run replays);
    # past it the run's later calls are not recorded and a resume calls the model from there.
    journal_max_bytes: int = 16 * 1024 * 1024
    # How long a tool call waits for a person's approval before the request expires.
    approval_timeout_seconds: float = 7 * 24 * 3600.0

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def __post_init__(self) -> None:
        positive = (
            "task_timeout_seconds",
            "poll_interval_seconds",
            "db_statement_timeout_ms",
            "heartbeat_interval_seconds",
            "heartbeat_stale_threshold_seconds",
            "max_concurrent_tasks",
            "retention_seconds",
            "stale_scan_interval_seconds",
            "max_request_bytes",
            "db_retry_seconds",
            "db_request_timeout_seconds",
            "shutdown_timeout_seconds",
            "cleanup_timeout_seconds",
            "journal_max_bytes",
            "approval_timeout_seconds",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.heartbeat_stale_threshold_seconds <= self.heartbeat_interval_seconds:
            raise ValueError(
                f"heartbeat_stale_threshold_seconds ({self.heartbeat_stale_threshold_seconds}) must be "
                f"greater than heartbeat_interval_seconds ({self.heartbeat_interval_seconds}), "
                "or a live owner would look dead between two heartbeats"
            )
        check_schema_name(self.db_schema)
        if isinstance(self.db_pool_max_size, bool) or not isinstance(self.db_pool_max_size, int) \
                or self.db_pool_max_size < 2:
            raise ValueError(f"db_pool_max_size must be an integer of at least 2, got {self.db_pool_max_size!r}")
        for name in ("memory_max_chars", "memory_max_per_identity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.memory_embedding_endpoint is not None and (
                not isinstance(self.memory_embedding_endpoint, str) or not self.memory_embedding_endpoint.strip()):
            raise ValueError(f"memory_embedding_endpoint must be an endpoint name or None, "
                             f"got {self.memory_embedding_endpoint!r}")
        if self.multitask_strategy not in MULTITASK_STRATEGIES:
            raise ValueError(f"multitask_strategy must be one of {', '.join(MULTITASK_STRATEGIES)}, "
                             f"got {self.multitask_strategy!r}")
