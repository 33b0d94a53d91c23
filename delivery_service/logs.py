"""Logging set-up: tokens and tickets never reach a log line.

uvicorn logs a WebSocket's full URL, query string included, so a `?ticket=` or `?token=` would
land in the access log; a filter on every handler scrubs them.
"""

from __future__ import annotations

import logging
import re

SECRET_QUERY = re.compile(r"((?:ticket|token|access_token|password)=)[^&\s\"']+", re.IGNORECASE)
BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+")


class ScrubSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                scrub(a) if isinstance(a, str) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        return True


def scrub(text: str) -> str:
    return BEARER.sub(r"\1***", SECRET_QUERY.sub(r"\1***", text))


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if not any(isinstance(f, ScrubSecrets) for f in handler.filters):
                handler.addFilter(ScrubSecrets())
        if not any(isinstance(f, ScrubSecrets) for f in logger.filters):
            logger.addFilter(ScrubSecrets())
