"""Errors on the wire: `{"error": {"code", "message", "details"}}` with the right HTTP status.

The one place where a domain error code becomes a status (DESIGN.md §7).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from delivery_service.domain.errors import Conflict, DomainError, Unprocessable
from delivery_service.storage.database import DatabaseUnavailable, lost_connection

STATUS_BY_CODE: dict[str, int] = {
    "invalid_credentials": 401,
    "unauthorized": 401,
    "forbidden": 403,
    "navigation_forbidden": 403,
    "pause_not_allowed": 403,
    "invalid_transition": 409,
    "attempt_not_in_progress": 409,
    "deadline_passed": 409,
    "attempt_limit_reached": 409,
    "client_seq_conflict": 409,
    "version_conflict": 409,
    "unknown_item": 422,
    "invalid_response": 422,
    "position_out_of_range": 422,
    "validation_error": 422,
    "too_many_attempts": 429,
    "invalid_accommodation": 422,
    "superseded": 409,
    "reason_required": 422,
    "invalid_policy": 422,
    "seb_required": 403,
    "account_disabled": 403,
    "current_password_incorrect": 403,
    "invalid_set_password_token": 400,
    "seb_key_invalid": 403,
    "ledger_staff_only": 403,
    "review_not_allowed": 403,
    "password_required": 403,
    "password_incorrect": 403,
    "network_not_allowed": 403,
}


# Starlette's own HTTP errors (routing, the body-size limit), by status.
HTTP_CODES = {
    400: "invalid_json",  # FastAPI could not parse the body (e.g. nested beyond the parser's limit)
    404: "not_found",
    405: "method_not_allowed",
}

UNAVAILABLE = {
    "redis_unavailable": "live state is unavailable; retry shortly",
    "database_unavailable": "the database is unavailable or busy; retry shortly",
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "the body is not JSON, or nested too deeply to parse (`invalid_json`)",
        401: "not authenticated (`unauthorized`, `token_revoked`, `invalid_credentials`)",
        403: "not allowed (`forbidden`, `navigation_forbidden`, `pause_not_allowed`, "
        "`seb_required`, `seb_key_invalid`, `password_required`, `password_incorrect`, "
        "`network_not_allowed`)",
        404: "not found, or not yours (`…_not_found`)",
        409: "conflicts with the current state (`invalid_transition`, `deadline_passed`, …)",
        422: "invalid input (`validation_error`, `invalid_response`, `unknown_item`, …)",
        413: "the request body is larger than allowed (`payload_too_large`)",
        429: "too many attempts (`too_many_attempts`); `Retry-After` says when to try again",
        503: "the database or Redis is unavailable (`database_unavailable`, "
        "`redis_unavailable`); retry after `Retry-After` seconds",
    }.items()
}


class ApiError(Exception):
    """An edge-level error (authentication, malformed request) that is not a domain rule."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unavailable_code(error: BaseException) -> str | None:
    """The retryable code for a backing service failing under a request, if that is what
    happened (Redis down, the database down or its connection pool exhausted under load)."""
    if isinstance(error, RedisError):
        return "redis_unavailable"
    if isinstance(error, DatabaseUnavailable | OperationalError | InterfaceError | PoolTimeout):
        return "database_unavailable"
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return "database_unavailable"
    # Raw socket errors and timeouts: the driver raises some of these (opening a pooled
    # connection, beginning a transaction on a dead one) past SQLAlchemy's error events. Redis
    # failures are RedisErrors (above), so what is left is the database.
    if lost_connection(error):
        return "database_unavailable"
    return None


def refused_data(error: BaseException) -> bool:
    """The database refused a value it cannot hold (SQLSTATE class 22: a character it cannot
    store, a number out of range): the client's input, not our failure. The input models
    refuse such values first; this is the net under them."""
    if not isinstance(error, DBAPIError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("22")


REFUSED_DATA = "the request holds a value that cannot be stored"


def status_for(error: DomainError) -> int:
    if error.code.endswith("_not_found"):
        return 404
    if error.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[error.code]
    if isinstance(error, Unprocessable):
        return 422
    return 409 if isinstance(error, Conflict) else 400


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return body


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def validation_details(errors: Any) -> dict[str, Any]:
    return {
        "errors": [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in errors
        ]
    }


def install(app: FastAPI) -> None:
    # Starlette calls each handler only with the class it was registered for; the checks narrow
    # the type for mypy (Starlette's signature says Exception).
    async def domain(_: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, DomainError):
            raise exc
        wait = exc.details.get("retry_after_seconds")
        headers = {"Retry-After": str(int(wait))} if isinstance(wait, int | float) else None
        return _json(status_for(exc), error_body(exc.code, exc.message, exc.details), headers)

    async def api(_: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, ApiError):
            raise exc
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _json(exc.status, error_body(exc.code, exc.message), headers)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, RequestValidationError):
            raise exc
        return _json(
            422,
            error_body(
                "validation_error", "the request is not valid", validation_details(exc.errors())
            ),
        )

    async def http(_: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, StarletteHTTPException):
            raise exc
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return _json(exc.status_code, error_body(code, str(exc.detail)))

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        """Redis or the database failed under a request: a clear, retryable 503, counted."""
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.metrics.failure("http", exc)
        code = unavailable_code(exc) or "database_unavailable"
        return _json(503, error_body(code, UNAVAILABLE[code]), {"Retry-After": "2"})

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        """Anything else: still the error shape a client parses, never a bare text page.
        (Starlette logs the exception with its traceback after this answer.)"""
        if unavailable_code(exc) is not None:
            return await unavailable(request, exc)
        if refused_data(exc):
            return _json(422, error_body("validation_error", REFUSED_DATA))
        return _json(500, error_body("internal_error", "the server failed; retry"))

    for kind in (RedisError, DatabaseUnavailable, OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(kind, unavailable)
    app.add_exception_handler(Exception, failed)
    app.add_exception_handler(DomainError, domain)
    app.add_exception_handler(ApiError, api)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
