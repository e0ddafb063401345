"""OpenAI-style error bodies: ``{"error": {"message", "type", "code", "param"}}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_TYPES = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
          413: "invalid_request_error", 503: "service_unavailable_error"}


class ApiError(Exception):
    """An error answered to the client as-is (status, message, code, param)."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def error_response(status: int, message: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    error_type = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(
        {"error": {"message": message, "type": error_type, "code": code, "param": param}},
        status_code=status,
    )


def not_found(response_id: str) -> ApiError:
    return ApiError(404, f"No response with id '{response_id}' found.", code="response_not_found", param="response_id")


def shutting_down() -> ApiError:
    return ApiError(503, "The server is shutting down; retry (another worker, or this one once restarted, "
                    "answers).", code="server_shutting_down")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, ours or the framework's, answer in the OpenAI shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.code, exc.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 405:
            message = f"{message}. See the README for the supported methods of each endpoint."
        return error_response(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(400, f"Invalid request: {first.get('msg', exc)}", "invalid_request", param)
