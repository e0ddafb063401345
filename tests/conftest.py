"""Shared fixtures: one real embedded PostgreSQL per test session, and a fresh
schema per test so tests never see each other's rows (nothing to reset)."""

from __future__ import annotations

import uuid

import pytest

from agent_server.long_running.embedded import EmbeddedPostgres


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory) -> EmbeddedPostgres:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def pg_url(embedded_pg) -> str:
    """URL of the session's embedded PostgreSQL (a Unix socket, no TCP)."""
    return embedded_pg.url


@pytest.fixture
def db_schema() -> str:
    """A schema name no other test uses."""
    return f"t_{uuid.uuid4().hex[:12]}"
