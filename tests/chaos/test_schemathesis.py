"""Schemathesis over the app's own `/openapi.json`, once per role (issue 17).

Why: docs/api.md promises that the OpenAPI document "is always current" and that every error has
one shape, `{"error": {"code", "message"}}` with the right status. Schemathesis generates requests
from that document (valid ones and, in its negative mode, invalid ones) for every operation and
checks, for an admin, a teacher, a student and a caller without a token:

- no 5xx (`not_a_server_error`): whatever arrives, the server answers it;
- the status is one the document lists, the content type and the body match it;
- every error body (4xx) has the documented shape with a snake_case `code`.

Realistic ids are seeded first (a class, a test, a scheduled session, a running attempt, a bank
item) and most generated path ids are swapped for them, so operations get past "not found" into
their real checks; some keep the generated id, so "not found" is exercised too.

The server runs in-process (uvicorn in an event loop of its own thread) on the real PostgreSQL
and Redis; Schemathesis calls it over HTTP. Default: a few examples per operation.
`pytest -m long tests/chaos/test_schemathesis.py` runs many more, with Schemathesis's coverage
phase (its boundary values for every parameter) on.
"""

from __future__ import annotations

import asyncio
import re
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, checks
from schemathesis.checks import CheckContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from delivery_service.app import create_app
from delivery_service.embedded import Served
from delivery_service.settings import Settings
from delivery_service.storage.database import create_engine, create_sessionmaker
from tests.chaos.threaded import ServerErrors, ServerThread
from tests.conftest import TABLES, make_settings
from tests.services import REDIS_URL, redis_problem, require
from tests.support import HOMEROOM, HOMEROOM_ID, Api, add_class, add_user, sample_test

T = TypeVar("T")
ROLES = ["admin", "teacher", "student", "anonymous"]
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")


# ---- the server, in a thread of its own ---------------------------------------------------------


# ---- seeded data --------------------------------------------------------------------------------


@dataclass
class Seeded:
    url: str
    tokens: dict[str, str]
    #: path parameter (or body field) name -> real values to use instead of generated ones
    ids: dict[str, list[str]] = field(default_factory=dict)


async def seed(served: Served, settings: Settings) -> Seeded:
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    users = {
        name: str(await add_user(sessions, name, role))
        for name, role in (
            ("admin", "admin"),
            ("teacher", "teacher"),
            ("student1", "student"),
            ("student2", "student"),
            # The account the fuzzing of /users/{user_id} resets, demotes and disables: not one
            # whose token the checks sign in with.
            ("fuzzed", "student"),
        )
    }
    students = [uuid.UUID(users["student1"]), uuid.UUID(users["student2"])]
    await add_class(sessions, HOMEROOM, teachers=[uuid.UUID(users["teacher"])], students=students)
    await engine.dispose()
    apis = {name: await Api.login(served.url, name) for name in users if name != "fuzzed"}
    try:
        teacher, student = apis["teacher"], apis["student1"]
        test_id = (await teacher.post("/tests", sample_test(attempt_limit=100), expect=201))["id"]
        paper = (await teacher.post("/tests", sample_test(title="paper", assigned_to=[]), 201))[
            "id"
        ]
        klass = await teacher.post("/classes", {"name": "Beacon"}, expect=201)
        for name in ("student1", "student2"):
            await teacher.post(f"/classes/{klass['id']}/students", {"username": name}, expect=201)
        soon = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
        session = await teacher.post(
            "/sessions",
            {"class_id": klass["id"], "test_id": paper, "title": "mock", "scheduled_at": soon},
            expect=201,
        )
        running = await student.post("/attempts", {"test_id": test_id}, expect=201)
        await student.post(f"/attempts/{running['id']}/start")
        await student.post(
            f"/attempts/{running['id']}/answers",
            {"item_id": "q1", "response": "B", "client_seq": 1},
        )
        choices = [{"identifier": c, "text": c} for c in "AB"]
        bank = {"identifier": "bank1", "prompt": "Bank?", "choices": choices, "correct": ["A"]}
        await teacher.post("/items", bank, expect=201)
        tokens = {
            "admin": apis["admin"].token,
            "teacher": teacher.token,
            "student": student.token,
        }
        ids = {
            "attempt_id": [running["id"]],
            "test_id": [test_id, paper],
            "class_id": [klass["id"]],
            "session_id": [session["id"]],
            "student_id": [users["student1"], users["student2"]],
            "teacher_id": [users["teacher"]],
            "user_id": [users["fuzzed"]],
            "item_id": ["q1", "q2"],
            "identifier": ["bank1"],
        }
        return Seeded(served.url, tokens, ids)
    finally:
        for api in apis.values():
            await api.close()


def realistic(value: Any, pool: list[str]) -> Any:
    """Usually a seeded id; sometimes (decided by the generated value) the generated one."""
    choice = zlib.crc32(repr(value).encode()) % (len(pool) + 1)
    return pool[choice] if choice < len(pool) else value


def with_seeded_ids(case: Case, seeded: Seeded) -> None:
    if case.path_parameters:
        for name, value in list(case.path_parameters.items()):
            if name in seeded.ids:
                case.path_parameters[name] = realistic(value, seeded.ids[name])
    if isinstance(case.body, dict):
        for name, value in list(case.body.items()):
            if name in seeded.ids:
                case.body[name] = realistic(value, seeded.ids[name])


# ---- the checks ---------------------------------------------------------------------------------


def error_body_shape(ctx: CheckContext, response: Any, case: Case) -> bool | None:
    """docs/api.md: every error is `{"error": {"code": "stable_snake_case", "message": "…"}}`."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{response.status_code} without a JSON body: {response.text[:200]!r}"
        ) from None
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"{response.status_code} body is not {{'error': …}}: {body!r}"
    code, message = error.get("code"), error.get("message")
    assert isinstance(code, str), f"error without a string code: {body!r}"
    assert SNAKE_CASE.match(code), f"error code {code!r} is not snake_case"
    assert isinstance(message, str), f"error without a string message: {body!r}"
    assert set(error) <= {"code", "message", "details"}, f"unexpected error fields: {body!r}"
    return True


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    error_body_shape,
]


def config(*, long: bool) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": 17,
            "generation": {"mode": "all", "max-examples": 150 if long else 3},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": long},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    )


def document() -> dict[str, Any]:
    """The app's own OpenAPI document: what `/openapi.json` serves (FastAPI's `app.openapi()`).
    Building the app connects to nothing, so the document is there at collection time."""
    return create_app(make_settings("sqlite+aiosqlite:///:memory:", "memory://")).openapi()


@pytest.fixture(scope="module")
def api(postgres_schema: str) -> Iterator[tuple[Seeded, ServerErrors]]:
    """One worker for the module, on a clean database, with the seeded ids."""
    require(redis_problem())
    asyncio.run(truncate(postgres_schema))
    settings = make_settings(postgres_schema, REDIS_URL)
    server = ServerThread(settings, name="chaos-schemathesis")
    errors = ServerErrors()
    try:
        with errors.installed():
            served = server.run(server.start_worker())
            yield server.run(seed(served, settings)), errors
    finally:
        server.close()


async def truncate(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
    await engine.dispose()


def call(case: Case, role: str, api: tuple[Seeded, ServerErrors]) -> None:
    seeded, errors = api
    errors.records.clear()  # left by a case that failed (and was reported) before its check
    with_seeded_ids(case, seeded)
    token = seeded.tokens.get(role)
    case.call_and_validate(
        base_url=seeded.url,
        headers={"Authorization": f"Bearer {token}"} if token else None,
        checks=CHECKS,
        timeout=30,
    )
    logged = [f"{r.name}: {r.getMessage()}" for r in errors.records]
    errors.records.clear()
    assert not logged, f"the server logged errors: {logged}"


DOCUMENT = document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=config(long=False))
schema_long = schemathesis.openapi.from_dict(DOCUMENT, config=config(long=True))
QUICK = settings(deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("role", ROLES)
@QUICK
@schema.parametrize()
def test_every_operation_answers_within_its_documented_contract(
    case: Case, role: str, api: tuple[Seeded, ServerErrors]
) -> None:
    call(case, role, api)


@pytest.mark.long
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("role", ROLES)
@QUICK
@schema_long.parametrize()
def test_every_operation_answers_within_its_documented_contract_over_a_long_run(
    case: Case, role: str, api: tuple[Seeded, ServerErrors]
) -> None:
    call(case, role, api)


# ---- what the runs above found, each pinned by one request -------------------------------------


def rest(api: tuple[Seeded, ServerErrors], role: str) -> httpx.Client:
    seeded, _ = api
    headers = {"Authorization": f"Bearer {seeded.tokens[role]}"} if role in seeded.tokens else {}
    return httpx.Client(base_url=f"{seeded.url}/api/v1", headers=headers, timeout=30)


def documented(method: str, path: str) -> set[int]:
    operation = DOCUMENT["paths"][path][method.lower()]
    return {int(status) for status in operation["responses"] if status.isdigit()}


def test_a_nul_character_in_a_text_field_is_refused_not_a_server_error(
    api: tuple[Seeded, ServerErrors],
) -> None:
    """PostgreSQL stores no U+0000 in text or JSONB: a test title, a class name or an integrity
    event's detail holding one reached the INSERT and came back 500 with a traceback logged."""
    seeded, errors = api
    errors.records.clear()
    attempt = seeded.ids["attempt_id"][0]
    event = {"type": "integrity_event", "data": {"kind": "copy", "detail": "Ctrl+C\u0000"}}
    requests = {
        "POST /tests": ("teacher", "/tests", sample_test(title="Unit\u00003")),
        "POST /classes": ("teacher", "/classes", {"name": "Beacon\u0000"}),
        "POST /attempts/{id}/events": (
            "student",
            f"/attempts/{attempt}/events",
            {"events": [event]},
        ),
    }
    statuses = {}
    for route, (role, path, body) in requests.items():
        # A connection of its own each: after a 500 the server closes the one it answered on.
        with rest(api, role) as client:
            statuses[route] = client.post(path, json=body).status_code
    logged = [r.getMessage() for r in errors.records]
    errors.records.clear()
    assert all(status < 500 for status in statuses.values()), statuses
    assert not logged, logged


def test_an_item_version_beyond_the_database_integer_is_refused_not_a_server_error(
    api: tuple[Seeded, ServerErrors],
) -> None:
    """`GET /items/{identifier}?version=` takes any integer; one past 2**31 overflowed the
    INTEGER column in the query and came back 500."""
    _, errors = api
    with rest(api, "teacher") as teacher:
        reply = teacher.get("/items/bank1", params={"version": 2**70})
    errors.records.clear()
    assert reply.status_code in (404, 422), (reply.status_code, reply.text)


def test_creating_an_attempt_documents_the_200_it_answers_for_one_still_open(
    api: tuple[Seeded, ServerErrors],
) -> None:
    """docs/api.md: `POST /attempts` answers 201 with a new attempt, or 200 with the caller's
    attempt that is still open; the OpenAPI document listed only 201."""
    seeded, _ = api
    body = {"test_id": seeded.ids["test_id"][0]}
    with rest(api, "teacher") as teacher:
        # The fuzzing above may have changed who may take the test, and when: open it again.
        reset = {"assigned_to": [str(HOMEROOM_ID)], "password": None}
        teacher.put(f"/tests/{body['test_id']}/availability", json=reset).raise_for_status()
    with rest(api, "student") as student:
        first = student.post("/attempts", json=body)  # new, or the seeded one if still open
        again = student.post("/attempts", json=body)
    assert first.status_code in (200, 201), first.text
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"]), again.text
    assert 200 in documented("POST", "/api/v1/attempts")


def test_a_body_that_is_not_json_gets_a_documented_status(
    api: tuple[Seeded, ServerErrors],
) -> None:
    """A body that is not even UTF-8 (what Schemathesis's negative mode sends) is answered 400
    `invalid_json`, a status no operation's responses in the OpenAPI document listed (a body that
    is text but not JSON gets the documented 422)."""
    seeded, _ = api
    with rest(api, "student") as student:
        reply = student.post(
            "/attempts", content=b"\xff{not utf-8", headers={"Content-Type": "application/json"}
        )
    assert reply.status_code < 500
    assert reply.json()["error"]["code"]
    assert reply.status_code in documented("POST", "/api/v1/attempts"), reply.status_code
