"""Logging set-up: tokens and tickets never reach a log line; JSON lines in production.

uvicorn logs a WebSocket's full URL, query string included, so a `?ticket=` or `?token=` would
land in the access log; a filter on every logger and handler scrubs them. With
`EXAMSERVER_LOG_FORMAT=json` every line is one JSON object carrying the ids bound for the request
or socket that wrote it (request_id, connection_id, attempt_id, session_id), so one candidate's
story can be followed across workers. A small formatter over the standard library does this:
uvicorn and every library already log through it, and one pipeline is simpler than two.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# `code=`: an OpenID Connect callback's authorization code (routes/oidc.py).
SECRET_QUERY = re.compile(
    r"((?:ticket|token|access_token|password|code)=)[^&\s\"']+", re.IGNORECASE
)
BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")

_context: ContextVar[dict[str, str]] = ContextVar("examserver_log_context", default={})  # noqa: B039 - never mutated, only replaced


def bind(**ids: object) -> None:
    """Add ids to every log line written from this task (and the tasks it starts) from now on."""
    _context.set(_context.get() | {k: str(v) for k, v in ids.items() if v is not None})


@contextmanager
def bound(**ids: object) -> Iterator[None]:
    token = _context.set(_context.get() | {k: str(v) for k, v in ids.items() if v is not None})
    try:
        yield
    finally:
        _context.reset(token)


def request_id(header: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, a fresh one otherwise."""
    if header and REQUEST_ID.match(header):
        return header
    return secrets.token_hex(8)


class ScrubSecrets(logging.Filter):
    """Scrub secrets out of a record, keeping its arguments when that is enough (uvicorn's
    access formatter needs them), else replacing it with the scrubbed message: scrubbing only a
    format string could remove a `%s` (as in `ticket=%s`) and break the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: keep it visible, scrubbed
            record.msg, record.args = scrub(f"{record.msg} {record.args}"), ()
            return True
        if scrub(message) == message:
            return True
        if isinstance(record.args, tuple) and record.args:
            args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
            try:
                rebuilt = str(record.msg) % args
            except (TypeError, ValueError):
                rebuilt = ""
            if rebuilt and scrub(rebuilt) == rebuilt:
                record.args = args
                return True
        record.msg, record.args = scrub(message), ()
        return True


def scrub(text: str) -> str:
    return BEARER.sub(r"\1***", SECRET_QUERY.sub(r"\1***", text))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        line |= _context.get()
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: int = logging.INFO, *, json_lines: bool = False) -> None:
    root = logging.getLogger()
    if json_lines:
        stream = logging.StreamHandler()
        stream.setFormatter(JsonFormatter())
        root.handlers = [stream]
        root.setLevel(level)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers = []  # through the root's JSON handler
            logger.propagate = True
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if not any(isinstance(f, ScrubSecrets) for f in handler.filters):
                handler.addFilter(ScrubSecrets())
        if not any(isinstance(f, ScrubSecrets) for f in logger.filters):
            logger.addFilter(ScrubSecrets())
