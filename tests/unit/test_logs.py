"""JSON log lines: one object per line, with the bound ids, and never a secret."""

from __future__ import annotations

import json
import logging

from delivery_service.logs import JsonFormatter, ScrubSecrets, bound


def render(record: logging.LogRecord) -> dict[str, object]:
    ScrubSecrets().filter(record)
    return dict(json.loads(JsonFormatter().format(record)))


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("token=abc123 in an exception")
        except ValueError:
            import sys

            info = sys.exc_info()
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, msg, args, info)


def test_a_line_is_one_json_object_with_the_bound_ids() -> None:
    with bound(request_id="r1", attempt_id="a1", session_id=None):
        line = render(record("saved %s", "q1"))
    assert line | {"ts": None} == {
        "ts": None, "level": "info", "logger": "uvicorn.access", "message": "saved q1",
        "request_id": "r1", "attempt_id": "a1",
    }  # fmt: skip
    assert "request_id" not in render(record("outside"))


def test_tickets_tokens_and_bearer_values_are_scrubbed() -> None:
    line = render(record('%s "GET /api/v1/attempts/x/ws?ticket=%s" 101', "1.2.3.4", "s3cret"))
    assert "s3cret" not in json.dumps(line)
    assert "ticket=***" in str(line["message"])
    bearer = render(record("Authorization: Bearer eyJhbGciOi.payload.sig"))
    assert bearer["message"] == "Authorization: Bearer ***"
    failed = render(record("handler failed", exc=True))
    assert "abc123" not in str(failed["exception"])


def test_uvicorns_own_access_formatter_still_gets_its_arguments() -> None:
    from uvicorn.logging import AccessFormatter

    access = record(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/ws?ticket=s3cret", "1.1", 101
    )
    ScrubSecrets().filter(access)
    line = AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s').format(access)
    assert line == '127.0.0.1:1 "GET /ws?ticket=*** HTTP/1.1" 101 Switching Protocols'
