"""Grant a Databricks App's service principal what it needs on the engine's schemas.

When you deploy, the app's service principal gets CONNECT and CREATE on the
Lakebase database (the ``postgres`` resource in databricks.yml), and the app
creates its schema and tables itself on first start, owning them. Run this
script when objects were created by someone else first: typically you ran the
server locally against the same Lakebase branch, so the schema and tables are
yours and the app cannot use them.

It grants, for each schema (``--schema``, repeatable; default
``AGENT_SERVER_DB_SCHEMA`` or ``agent_server``):

- USAGE, CREATE on the schema;
- SELECT, INSERT, UPDATE, DELETE on every table in it;
- USAGE, SELECT, UPDATE on every sequence in it;
- the same on tables and sequences you create there later (default privileges);
- CONNECT, CREATE on the database (the Apps resource grants this too; locally
  the engine needs it because it runs CREATE SCHEMA IF NOT EXISTS at start).

Connection: ``DATABASE_URL`` when set (any Postgres), else Lakebase from
``LAKEBASE_AUTOSCALING_ENDPOINT``, ``LAKEBASE_AUTOSCALING_PROJECT`` +
``LAKEBASE_AUTOSCALING_BRANCH`` or ``LAKEBASE_INSTANCE_NAME`` (read from the
environment or ``.env``), authenticated as you through the Databricks SDK.

Usage::

    uv run grant-lakebase-permissions <service-principal-client-id> --schema agent_server_openai
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from agent_server.long_running.storage.lakebase_config import (
    THREE_OPTIONS,
    LakebaseConfig,
    LakebaseConfigError,
    lakebase_from_environment,
)
from agent_server.long_running.settings import check_schema_name

DEFAULT_SCHEMA = "agent_server"
TABLE_PRIVILEGES = sql.SQL("SELECT, INSERT, UPDATE, DELETE")
SEQUENCE_PRIVILEGES = sql.SQL("USAGE, SELECT, UPDATE")
SCHEMA_PRIVILEGES = sql.SQL("USAGE, CREATE")


class GrantError(RuntimeError):
    """A problem the user can fix; the message says how."""


# ---------------------------------------------------------------- connection


@contextmanager
def connect(database_url: str | None, lakebase: LakebaseConfig) -> Iterator[tuple[psycopg.Connection, bool]]:
    """Yield ``(connection, is_lakebase)``; the connection autocommits each grant."""
    if database_url:
        with psycopg.connect(database_url, autocommit=True) as conn:
            yield conn, False
        return
    if not lakebase.configured:
        raise GrantError(
            f"no database configured: set DATABASE_URL, or {THREE_OPTIONS} "
            "(in the environment or .env; `uv run quickstart` writes them)"
        )
    from databricks_ai_bridge.lakebase import LakebasePool

    pool = LakebasePool(**lakebase.pool_arguments(), min_size=1, max_size=1)
    try:
        with pool.connection() as conn:
            conn.autocommit = True
            yield conn, True
    finally:
        pool.close()


# -------------------------------------------------------------------- grants


def _rows(conn: psycopg.Connection, query, params=None) -> list[tuple]:
    # Tuples whatever the connection's row factory (Lakebase pools hand out dict rows).
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def ensure_role(conn: psycopg.Connection, grantee: str, *, lakebase: bool) -> None:
    """Make sure the grantee role exists (Lakebase can create it for a service principal)."""
    if _rows(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", (grantee,)):
        return
    if not lakebase:
        raise GrantError(f"role {grantee!r} does not exist in this database; create it first (CREATE ROLE ... LOGIN)")
    # Lakebase maps Databricks identities to Postgres roles through this extension.
    conn.execute("CREATE EXTENSION IF NOT EXISTS databricks_auth")
    try:
        conn.execute("SELECT databricks_create_role(%s, 'SERVICE_PRINCIPAL')", (grantee,))
    except psycopg.errors.InvalidParameterValue:
        raise GrantError(
            f"no service principal {grantee!r} in this workspace; pass the app's service_principal_client_id"
        ) from None
    print(f"created Postgres role for service principal {grantee}")


def grant_database(conn: psycopg.Connection, grantee: str) -> None:
    database = _rows(conn, "SELECT current_database()")[0][0]
    conn.execute(
        sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(grantee))
    )
    print(f"database {database}: CONNECT, CREATE")


def grant_schema(conn: psycopg.Connection, grantee: str, schema: str) -> bool:
    """Grant everything on one schema; False when the schema does not exist yet."""
    if not _rows(conn, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)):
        print(
            f"schema {schema}: does not exist yet, nothing to grant "
            "(the app creates it on first start and owns it)"
        )
        return False
    role = sql.Identifier(grantee)
    ident = sql.Identifier(schema)
    conn.execute(sql.SQL("GRANT {} ON SCHEMA {} TO {}").format(SCHEMA_PRIVILEGES, ident, role))
    print(f"schema {schema}: USAGE, CREATE")

    # Object by object rather than ON ALL ... IN SCHEMA: on Lakebase the bulk
    # form skips objects owned by other roles, and this way the output shows
    # exactly what was granted.
    tables = _rows(
        conn,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname",
        (schema,),
    )
    for (table,) in tables:
        conn.execute(sql.SQL("GRANT {} ON TABLE {} TO {}").format(TABLE_PRIVILEGES, sql.Identifier(schema, table), role))
    print(f"schema {schema}: SELECT, INSERT, UPDATE, DELETE on {len(tables)} table(s)")

    sequences = _rows(
        conn, "SELECT sequencename FROM pg_sequences WHERE schemaname = %s ORDER BY sequencename", (schema,)
    )
    for (sequence,) in sequences:
        conn.execute(
            sql.SQL("GRANT {} ON SEQUENCE {} TO {}").format(SEQUENCE_PRIVILEGES, sql.Identifier(schema, sequence), role)
        )
    print(f"schema {schema}: USAGE, SELECT, UPDATE on {len(sequences)} sequence(s)")

    # Objects this user creates in the schema later (a local run that adds a
    # table) are covered too. Default privileges apply to the creating role,
    # which is the one running this script.
    conn.execute(
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON TABLES TO {}").format(ident, TABLE_PRIVILEGES, role)
    )
    conn.execute(
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON SEQUENCES TO {}").format(
            ident, SEQUENCE_PRIVILEGES, role
        )
    )
    print(f"schema {schema}: default privileges on future tables and sequences")
    return True


def grant_all(conn: psycopg.Connection, grantee: str, schemas: Sequence[str], *, lakebase: bool) -> None:
    """Everything the engine needs, for every schema in ``schemas``."""
    ensure_role(conn, grantee, lakebase=lakebase)
    grant_database(conn, grantee)
    for schema in schemas:
        grant_schema(conn, grantee, schema)


# ----------------------------------------------------------------------- CLI


def _schema_name(value: str) -> str:
    # The engine's own rule, so a name the engine would refuse fails here too.
    try:
        return check_schema_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a lowercase schema name: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grant-lakebase-permissions",
        description=(
            "Grant a Databricks App's service principal USAGE+CREATE on the engine's Postgres schemas, "
            "read/write on their tables and sequences, and default privileges for objects created later. "
            "Connects with DATABASE_URL, or to Lakebase via LAKEBASE_* settings (environment or .env)."
        ),
    )
    parser.add_argument(
        "grantee",
        metavar="service-principal-client-id",
        help="the app's service principal client id (`databricks apps get <app-name>` shows it as "
        "service_principal_client_id); locally, any Postgres role name",
    )
    parser.add_argument(
        "--schema",
        dest="schemas",
        action="append",
        type=_schema_name,
        help="schema to grant on; repeat for several (engine and agent memory schemas). "
        f"Default: AGENT_SERVER_DB_SCHEMA or {DEFAULT_SCHEMA!r}. The apps in databricks.yml use "
        "agent_server_openai and agent_server_langgraph.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dotenv import load_dotenv

    load_dotenv(override=False)  # the environment wins over .env
    schemas = args.schemas or [os.environ.get("AGENT_SERVER_DB_SCHEMA") or DEFAULT_SCHEMA]
    database_url = os.environ.get("DATABASE_URL")
    try:
        # DATABASE_URL wins, as in the server: the Lakebase settings then do not matter.
        lakebase = LakebaseConfig() if database_url else lakebase_from_environment()
        with connect(database_url, lakebase) as (conn, is_lakebase):
            grant_all(conn, args.grantee, schemas, lakebase=is_lakebase)
    except (GrantError, LakebaseConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg.errors.InsufficientPrivilege as exc:
        print(
            f"error: you may not grant these privileges ({exc}). Connect as the owner of the objects "
            "or as a member of databricks_superuser.",
            file=sys.stderr,
        )
        return 1
    print(f"done: {args.grantee} can now use schema(s) {', '.join(schemas)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
