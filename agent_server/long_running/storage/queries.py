"""Load the named SQL in ``sql/queries.sql`` and ``sql/migrations/*.sql``.

Business code asks for a query by name; no SQL is built anywhere else. The
only value formatted into SQL text is the schema name, which
:class:`EngineSettings` has already validated, and it is still quoted as an
identifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from psycopg import sql

_SQL_DIR = Path(__file__).parent / "sql"
_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def _raw_queries() -> dict[str, str]:
    text = (_SQL_DIR / "queries.sql").read_text()
    parts = _NAME_LINE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = [line for line in body.strip().splitlines()]
        # The first line after the name is the one-line description.
        statement = "\n".join(lines[1:]).strip()
        queries[name] = statement
    return queries


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statement: sql.Composed


class Queries:
    """All named statements, bound to one schema. Attribute access by name."""

    def __init__(self, schema: str):
        self.schema = schema
        ident = sql.Identifier(schema)
        # Rendered to bytes once: a Composed would be re-rendered on every execute.
        self._compiled = {
            name: sql.SQL(statement).format(schema=ident).as_bytes(None)
            for name, statement in _raw_queries().items()
        }
        self.events_channel = f"{schema}_events"
        self.control_channel = f"{schema}_control"

    def __getattr__(self, name: str) -> bytes:
        try:
            return self._compiled[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in queries.sql") from None

    def migrations(self) -> list[Migration]:
        """Schema migrations in version order (file names start with the version)."""
        ident = sql.Identifier(self.schema)
        result = []
        for path in sorted((_SQL_DIR / "migrations").glob("*.sql")):
            version = int(path.name.split("_", 1)[0])
            if result and result[-1].version == version:
                # Two branches each added the next number: the second would never run.
                raise RuntimeError(f"two migrations share version {version}: {result[-1].name} and {path.stem}")
            result.append(Migration(version, path.stem, sql.SQL(path.read_text()).format(schema=ident)))
        return result
