"""A database error that escapes a route is a 503 in words, never a bare 500."""

from __future__ import annotations

import psycopg
from fastapi import FastAPI, Request

from ..errors import error_response
from ..storage.bounded import DatabaseUnreachable, short_reason


def install_database_error_handler(app: FastAPI) -> None:
    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg.InterfaceError)
    async def _database_error(_request: Request, exc: Exception):
        error = DatabaseUnreachable(short_reason(exc))
        return error_response(error.status, error.message, error.code)
