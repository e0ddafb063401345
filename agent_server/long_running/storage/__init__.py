"""Postgres: connections, the named SQL, typed calls over it, row types."""
