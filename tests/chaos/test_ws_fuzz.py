"""WebSocket fuzzing from the published contract, and a flood beside a well-behaved candidate.

Why: the sockets are the server's widest door (issue 17, finding 6: one deeply nested frame raised
an unhandled RecursionError and dropped the socket). Messages are generated from
docs/ws-protocol.schema.json with hypothesis-jsonschema, then mutated (wrong types, extra fields,
huge numbers, deep nesting, a foreign `type` or `id`) or replaced by garbage (non-JSON text,
binary frames), and sent to the attempt socket, the session socket as a student and the session
socket as a proctor. Every frame must get a reply of a documented type (checked against the
schema's server-to-client half) or an `error` with a code docs/api.md documents, never
`internal_error`; the socket must stay usable (a `heartbeat` after each frame gets its `pong`)
unless the violations limit closed it with 1008; the server must never close with 1011 or drop
the connection (1006), nor log an unhandled exception.

The flood test runs one client sending garbage and over-rate messages as fast as it can
(reconnecting each time it is thrown out) while a well-behaved candidate answers on the same
worker: every answer must be acknowledged and stored, and its ack latency is printed beside a
baseline without the flood.

Default: a few dozen frames per socket. `pytest -m long tests/chaos/test_ws_fuzz.py` runs more.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import statistics
import threading
import time
import types
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import hypothesis.internal.conjecture.utils as conjecture
import hypothesis_jsonschema._from_schema as jsonschema_strategies
import pytest
import websockets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator
from pydantic_core import from_json
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.exceptions import ConnectionClosed

from delivery_service.embedded import Served, running_server
from delivery_service.settings import Settings
from delivery_service.storage.database import create_engine, create_sessionmaker
from delivery_service.storage.models import ResponseEvent
from tests.chaos.threaded import ServerErrors
from tests.conftest import make_settings
from tests.support import HOMEROOM, Api, add_class, add_user, sample_test

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = json.loads((ROOT / "docs" / "ws-protocol.schema.json").read_text())
API_DOC = (ROOT / "docs" / "api.md").read_text()

#: every `snake_case` token docs/api.md puts in backticks: the codes a client may switch on
DOCUMENTED = frozenset(re.findall(r"`([a-z][a-z0-9_]*)`", API_DOC))
#: docs/api.md, "Limits and close codes"
CLOSE_CODES = frozenset({4401, 4403, 4404, 4408, 4409, 1008, 1009, 1013, 1012})
ITEMS = ("q1", "q2", "q3", "q4", "t1", "e1")


def fuzz_test(**overrides: Any) -> dict[str, Any]:
    """The sample test, plus a text entry and an essay (answers of any text get stored), with
    time enough for a long run."""
    spec = sample_test(**({"time_limit_seconds": 4 * 3600} | overrides))
    spec["items"] += [
        {"identifier": "t1", "type": "text_entry", "prompt": "Capital?", "correct": ["Paris"]},
        {"identifier": "e1", "type": "extended_text", "prompt": "Explain.", "points": 2},
    ]
    return spec


# ---- hypothesis-jsonschema on today's Hypothesis ------------------------------------------------


class _LoopedMany:
    """hypothesis-jsonschema 0.23.1 (its latest release) draws object properties with
    `while elements.more(): ... elements.reject()`, an API of Hypothesis's private `many` that
    Hypothesis 6.170 replaced with a context manager iterated by `for`; unpatched, every object
    schema fails with "'many' object has no attribute 'more'". This drives the new API the old
    way, for that one module only."""

    def __init__(self, data: Any, **sizes: Any) -> None:
        self._many = conjecture.many(data, **sizes)
        self._many.__enter__()
        self._steps = iter(self._many)

    def more(self) -> bool:
        if next(self._steps, StopIteration) is StopIteration:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


if not hasattr(conjecture.many, "more"):
    jsonschema_strategies.cu = types.SimpleNamespace(many=_LoopedMany)  # type: ignore[attr-defined]


# ---- the contract -------------------------------------------------------------------------------


def client_schema(socket: str) -> dict[str, Any]:
    schema = dict(PROTOCOL[socket]["client_to_server"])
    schema.pop("discriminator", None)  # OpenAPI's, not JSON Schema's
    return schema


SERVER_MESSAGES = {
    socket: Draft202012Validator(PROTOCOL[socket]["server_to_client"])
    for socket in ("attempt", "session")
}


@dataclass(frozen=True)
class Frame:
    payload: str | bytes
    kind: str  # what produced it, for the statistics

    def __repr__(self) -> str:
        shown = self.payload if len(self.payload) < 300 else self.payload[:300]
        return f"Frame({self.kind}, {shown!r}{'...' if len(self.payload) >= 300 else ''})"

    @property
    def reply_to(self) -> str | None:
        """The `re` a reply must carry: the frame's own id, when the server can read it (both
        json.loads and pydantic's parser, which the server uses, read the same object)."""
        text = (
            self.payload.decode("utf-8", "replace")
            if isinstance(self.payload, bytes)
            else self.payload
        )
        try:
            body = json.loads(text)
            same = from_json(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(body, dict) or depth(body) > 100 or body.get("id") != same.get("id"):
            return None
        ident = body.get("id")
        return ident if isinstance(ident, str) and len(ident) <= 64 else None


def depth(value: Any) -> int:
    """How deeply `value` nests (without recursing: fuzzed frames nest thousands deep)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        deepest = max(deepest, level)
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else []
        )
        todo.extend((child, level + 1) for child in children)
    return deepest


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
HUGE_NUMBERS = st.sampled_from(
    [2**53 + 1, 2**63, -(2**63) - 1, 10**30, -(10**30), 10**400, 1e308, -1e308, 5e-324]
) | st.integers(min_value=19, max_value=600).map(lambda k: 10**k)


#: stands for a deeply nested value until the message is text
DEEP = "\ufdd0deep\ufdd0"


@st.composite
def mutated(draw: st.DrawFn, message: dict[str, Any]) -> Frame:
    """One valid message, broken in one way."""
    body = json.loads(json.dumps(message))
    data = body.get("data") if isinstance(body.get("data"), dict) else None
    keys = sorted(data) if data else []
    how = draw(
        st.sampled_from(
            ["wrong type", "extra field", "huge number", "deep nesting", "foreign type",
             "odd id", "no data", "real item", "raw token", "duplicate key"]
        )
    )  # fmt: skip
    if how == "wrong type" and data is not None and keys:
        data[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
    elif how == "wrong type":
        body["data"] = draw(JSON_VALUES)
    elif how == "extra field":
        target = data if data is not None and draw(st.booleans()) else body
        target[draw(st.text(min_size=1, max_size=12))] = draw(JSON_VALUES)
    elif how == "huge number":
        target = data if data is not None else body
        key = draw(st.sampled_from(keys)) if keys and draw(st.booleans()) else "client_seq"
        target[key] = draw(HUGE_NUMBERS)
    elif how == "deep nesting":
        target = data if data is not None else body
        target[draw(st.sampled_from(keys)) if keys else "x"] = DEEP
    elif how == "foreign type":
        body["type"] = draw(
            st.sampled_from(["submit_answer", "answer_submitted", "auth", "flag", "navigate",
                             "state_sync_request", "end_assessment", "AUTH", "", "heartbeat "])
            | st.text(max_size=20)
        )  # fmt: skip
    elif how == "odd id":
        body["id"] = draw(
            st.text(min_size=65, max_size=200) | st.integers() | st.lists(st.integers(), max_size=3)
        )
    elif how == "no data":
        body.pop("data", None)
    elif how == "real item" and data is not None:
        # Past the "unknown item" check, into the answer's own validation and storage.
        data["item_id"] = draw(st.sampled_from(ITEMS))
        data["response"] = draw(JSON_VALUES)
    text = json.dumps(body)
    if how == "deep nesting":  # spliced in as text: json.dumps itself recurses
        levels = draw(st.integers(50, 5000))
        text = text.replace(json.dumps(DEEP), "[" * levels + "0" + "]" * levels)
    elif how == "raw token":
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "1E-400"]))
        text = text[:-1] + f', "n": {token}}}' if text.endswith("}") else token
    elif how == "duplicate key":
        text = '{"type": "heartbeat", ' + text[1:] if text.startswith("{") else text
    return Frame(text, f"mutated: {how}")


def answers(socket: str) -> st.SearchStrategy[Frame]:
    """Answers to the items the attempt has, with any response: past the "unknown item" check,
    into each interaction's validation and the database."""
    kind = "submit_answer" if socket == "attempt" else "answer_submitted"
    message = st.fixed_dictionaries(
        {
            "type": st.just(kind),
            "id": st.text(min_size=1, max_size=8),
            "data": st.fixed_dictionaries(
                {
                    "item_id": st.sampled_from(ITEMS),
                    "response": st.sampled_from(["A", "B", ["A", "C"], None]) | JSON_VALUES,
                    "client_seq": st.integers(0, 2**53),
                }
            ),
        }
    )
    return message.map(lambda m: Frame(json.dumps(m), "answer"))


def garbage() -> st.SearchStrategy[Frame]:
    return st.one_of(
        st.text(max_size=200).map(lambda t: Frame(t, "text")),
        st.binary(max_size=200).map(lambda b: Frame(b, "binary")),
        st.sampled_from(
            [
                "null",
                "1",
                "[]",
                "{}",
                '"heartbeat"',
                "[{}]",
                '{"type": null}',
                '{"type": ["heartbeat"]}',
                '{"type": "heartbeat", "data": []}',
            ]
        ).map(lambda t: Frame(t, "json scalar")),
        st.integers(1, 5000).map(lambda n: Frame("[" * n, "open brackets")),
        st.integers(1, 5000).map(lambda n: Frame('{"a":' * n + "1" + "}" * n, "nested objects")),
    )


@functools.cache
def frames(socket: str) -> st.SearchStrategy[Frame]:
    valid = from_schema(client_schema(socket))
    as_text = valid.map(lambda m: Frame(json.dumps(m), "valid"))
    as_bytes = valid.map(lambda m: Frame(json.dumps(m).encode(), "valid, binary frame"))
    truncated = valid.flatmap(
        lambda m: st.integers(1, max(1, len(json.dumps(m)) - 1)).map(
            lambda cut: Frame(json.dumps(m)[:cut], "truncated")
        )
    )
    mutants = valid.flatmap(mutated)
    return st.one_of(as_text, as_bytes, mutants, truncated, answers(socket), garbage())


# ---- the stage: a worker, a running attempt, a running session ----------------------------------


@dataclass
class Stage:
    served: Served
    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    apis: dict[str, Api]
    test_id: str
    attempt_id: str
    session_id: str
    errors: ServerErrors
    stats: Counter[str] = field(default_factory=Counter)

    def ws_base(self) -> str:
        return self.served.url.replace("http://", "ws://")

    async def fresh_attempt(self, who: str = "student1") -> str:
        """A running attempt of `who` (a new test when the last ran out of attempts)."""
        api = self.apis[who]
        created = await api.http.post("/attempts", json={"test_id": self.test_id})
        if created.status_code == 409:
            self.test_id = (
                await self.apis["teacher"].post("/tests", fuzz_test(attempt_limit=100), expect=201)
            )["id"]
            created = await api.http.post("/attempts", json={"test_id": self.test_id})
        assert created.status_code in (200, 201), created.text
        attempt = created.json()
        if attempt["state"] == "not_started":
            await api.post(f"/attempts/{attempt['id']}/start")
        return str(attempt["id"])

    async def connect(self, target: str) -> websockets.ClientConnection:
        """Open and greet one of the three sockets under test."""
        if target == "attempt":
            api = self.apis["student1"]
            ticket = await api.ticket(self.attempt_id)
            url = f"{self.ws_base()}/api/v1/attempts/{self.attempt_id}/ws?ticket={ticket}"
            last = "timer"
        else:
            api = self.apis["student2" if target == "session student" else "teacher"]
            ticket = await api.ticket()
            url = f"{self.ws_base()}/api/v1/sessions/{self.session_id}/ws?ticket={ticket}"
            last = "state_sync_response"
        connection = await websockets.connect(url, open_timeout=10, max_size=None)
        validator = SERVER_MESSAGES[protocol_of(target)]
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await connection.recv())
                check_message(validator, message)
                if message["type"] == last:
                    return connection


def protocol_of(target: str) -> str:
    return "attempt" if target == "attempt" else "session"


def check_message(validator: Draft202012Validator, message: dict[str, Any]) -> None:
    """A documented message; an error with a documented code, never a server failure."""
    problems = sorted(validator.iter_errors(message), key=lambda e: list(e.absolute_path))
    assert not problems, f"not a documented message: {message}\n{problems[0].message[:500]}"
    if message["type"] == "error":
        code = message["data"]["code"]
        assert code != "internal_error", f"the server failed on a frame: {message}"
        assert code in DOCUMENTED, f"undocumented error code {code!r}: {message}"


@contextlib.asynccontextmanager
async def staged(settings: Settings) -> AsyncIterator[Stage]:
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    ids = {
        name: await add_user(sessions, name, role)
        for name, role in (("student1", "student"), ("student2", "student"), ("teacher", "teacher"))
    }
    await add_class(
        sessions, HOMEROOM, teachers=[ids["teacher"]], students=[ids["student1"], ids["student2"]]
    )
    errors = ServerErrors()
    try:
        with errors.installed():
            async with running_server(settings) as served:
                apis = {
                    n: await Api.login(served.url, n) for n in ("student1", "student2", "teacher")
                }
                try:
                    stage = await _set_the_stage(served, sessions, settings, apis, errors)
                    yield stage
                finally:
                    for api in apis.values():
                        await api.close()
    finally:
        await engine.dispose()


async def _set_the_stage(
    served: Served,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    apis: dict[str, Api],
    errors: ServerErrors,
) -> Stage:
    teacher = apis["teacher"]
    test_id = (await teacher.post("/tests", fuzz_test(attempt_limit=100), expect=201))["id"]
    klass = await teacher.post("/classes", {"name": "Fuzz"}, expect=201)
    await teacher.post(f"/classes/{klass['id']}/students", {"username": "student2"}, expect=201)
    paper = (await teacher.post("/tests", fuzz_test(title="paper", assigned_to=[]), 201))["id"]
    soon = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()  # its waiting room may open
    session = await teacher.post(
        "/sessions",
        {"class_id": klass["id"], "test_id": paper, "title": "fuzz", "scheduled_at": soon},
        expect=201,
    )
    stage = Stage(served, sessions, settings, apis, test_id, "", session["id"], errors)
    stage.attempt_id = await stage.fresh_attempt()
    await teacher.post(f"/sessions/{session['id']}/start-waiting")
    student = await stage.connect("session student")  # joins the waiting room
    try:
        await teacher.post(f"/sessions/{session['id']}/start")
        async with asyncio.timeout(10):
            while json.loads(await student.recv())["type"] != "session_started":
                pass
    finally:
        await student.close()
    return stage


def fuzz_settings(pg_url: str, redis_url: str) -> Settings:
    # Limits high enough that fuzzed frames reach the parser and the handlers, rather than all
    # being turned away as a flood (the flood test runs with the documented defaults).
    return make_settings(pg_url, redis_url, ws_rate_per_second=10_000.0, ws_rate_burst=10_000)


@pytest.fixture
async def stage(pg_url: str, redis_url: str) -> AsyncIterator[Stage]:
    async with staged(fuzz_settings(pg_url, redis_url)) as ready:
        yield ready
    if ready.stats:
        print(f"\nwhat the frames got back: {dict(ready.stats.most_common())}")


# ---- sending frames -----------------------------------------------------------------------------


@dataclass
class Exchange:
    replies: list[dict[str, Any]]
    closed: int | None = None  # the close code, if the server closed the socket


async def exchange(
    connection: websockets.ClientConnection, frame: Frame, validator: Draft202012Validator
) -> Exchange:
    """Send `frame`, then a heartbeat as a probe; return what came before the probe's pong."""
    probe = f"probe-{uuid.uuid4().hex}"
    replies: list[dict[str, Any]] = []
    try:
        await connection.send(frame.payload)
        await connection.send(json.dumps({"type": "heartbeat", "id": probe, "data": {}}))
        async with asyncio.timeout(15):
            while True:
                message = json.loads(await connection.recv())
                check_message(validator, message)
                if message.get("re") == probe:
                    assert message["type"] == "pong", message
                    return Exchange(replies)
                replies.append(message)
    except ConnectionClosed:
        return Exchange(replies, closed=connection.close_code)


def judge(stage: Stage, frame: Frame, seen: Exchange, violations: int) -> None:
    """The property, for one frame and what the server made of it."""
    answers = [m for m in seen.replies if m.get("seq") is None]  # replies, not pushed events
    if seen.closed is not None:
        assert seen.closed in CLOSE_CODES, f"closed with {seen.closed} after {frame!r}"
        assert seen.closed == 1008, f"closed with {seen.closed} after {frame!r}: {answers}"
        assert violations > stage.settings.ws_max_violations, (
            f"closed with 1008 after {violations} violations only: {frame!r}"
        )
        return
    assert answers, f"no reply to {frame!r} (events only: {seen.replies})"
    if (wanted := frame.reply_to) is not None:
        assert any(m.get("re") == wanted for m in answers), (
            f"no reply carries re={wanted!r} for {frame!r}: {answers}"
        )


async def fuzz(stage: Stage, target: str, batch: list[Frame]) -> None:
    validator = SERVER_MESSAGES[protocol_of(target)]
    stage.errors.take()  # left by an example that failed (and was reported) before its check
    if target == "attempt" and await attempt_over(stage):
        stage.attempt_id = await stage.fresh_attempt()  # a fuzzed end_assessment ended the last
    connection = await stage.connect(target)
    violations = 0
    try:
        for frame in batch:
            seen = await exchange(connection, frame, validator)
            violations += sum(m["type"] == "error" for m in seen.replies)
            for message in seen.replies:
                code = message["data"]["code"] if message["type"] == "error" else ""
                stage.stats[f"{message['type']} {code}".strip()] += 1
            judge(stage, frame, seen, violations)
            errors = stage.errors.take()
            assert not errors, f"the server logged errors after {frame!r}: {errors}"
            if seen.closed is not None:
                break
    finally:
        await connection.close()
    await asyncio.sleep(0.05)  # the server's side of the close
    errors = stage.errors.take()
    assert not errors, f"the server logged errors as the socket closed: {errors}"


async def attempt_over(stage: Stage) -> bool:
    view = await stage.apis["student1"].get(f"/attempts/{stage.attempt_id}")
    return view["state"] != "in_progress"


TARGETS = ["attempt", "session student", "session proctor"]


def fuzz_budget(examples: int, *, shrink: bool) -> settings:
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        deadline=None,
        # Shrinking replays against a live server, for minutes: only the long run does it.
        phases=phases,
        # The stage (a worker, users, an attempt, a session) is built once per test, on purpose.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@functools.cache
def batches(target: str) -> st.SearchStrategy[list[Frame]]:
    return st.lists(frames(protocol_of(target)), min_size=1, max_size=6)


# Reporting a failing frame thousands of brackets deep is "an overly large repr": not a failure.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@pytest.mark.parametrize("target", TARGETS)
@fuzz_budget(40, shrink=False)
@given(data=st.data())
async def test_every_fuzzed_frame_gets_a_documented_reply_and_the_socket_stays_usable(
    stage: Stage, target: str, data: st.DataObject
) -> None:
    await fuzz(stage, target, data.draw(batches(target), label="frames"))


@pytest.mark.long
@pytest.mark.timeout(3600)
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@pytest.mark.parametrize("target", TARGETS)
@fuzz_budget(1500, shrink=True)
@given(data=st.data())
async def test_every_fuzzed_frame_gets_a_documented_reply_over_a_long_run(
    stage: Stage, target: str, data: st.DataObject
) -> None:
    await fuzz(stage, target, data.draw(batches(target), label="frames"))


# ---- single frames that once broke, or still break, a socket ------------------------------------


async def one_frame(stage: Stage, target: str, payload: str | bytes) -> Exchange:
    """Open `target`, send `payload` and a probe, and close; the server must log no error."""
    connection = await stage.connect(target)
    try:
        seen = await exchange(
            connection, Frame(payload, "single"), SERVER_MESSAGES[protocol_of(target)]
        )
    finally:
        await connection.close()
    errors = stage.errors.take()
    assert not errors, f"the server logged errors: {errors}"
    return seen


def error_codes(seen: Exchange) -> list[str]:
    return [m["data"]["code"] for m in seen.replies if m["type"] == "error"]


@pytest.mark.parametrize("target", TARGETS)
async def test_a_deeply_nested_frame_under_the_size_limit_gets_invalid_message(
    stage: Stage, target: str
) -> None:
    """Issue 17, finding 6: `[` x 30,000 (under 64 KiB) made json.loads raise RecursionError in
    the worker, and the socket closed (1000) with no `error`."""
    seen = await one_frame(stage, target, "[" * 30_000)
    assert seen.closed is None, f"the socket closed with {seen.closed}"
    assert error_codes(seen) == ["invalid_message"]


@pytest.mark.parametrize("target", TARGETS)
async def test_a_message_type_that_is_not_a_string_gets_an_error_and_keeps_the_socket(
    stage: Stage, target: str
) -> None:
    """`{"type": ["heartbeat"]}`: the type is looked up in a frozenset, a list is unhashable, and
    the TypeError escaped the message loop: the socket closed (1000) with no `error`."""
    for payload in ('{"type": ["heartbeat"]}', '{"type": {"a": 1}, "id": "m1"}'):
        seen = await one_frame(stage, target, payload)
        assert seen.closed is None, f"{payload}: the socket closed with {seen.closed}"
        assert error_codes(seen) in (["unknown_type"], ["invalid_message"]), (payload, seen)


@pytest.mark.parametrize("target", ["attempt", "session student"])
async def test_a_nul_character_in_a_stored_text_is_answered_not_an_internal_error(
    stage: Stage, target: str
) -> None:
    """PostgreSQL cannot store U+0000 in text or JSONB: an integrity event whose `detail` holds one
    reached the INSERT and came back as `internal_error`, with a traceback in the log. It must be
    refused as invalid input (or stored without it), like any other bad field."""
    event = {"kind": "copy", "detail": "Ctrl+C\u0000", "client_event_id": uuid.uuid4().hex}
    payload = json.dumps({"type": "integrity_event", "id": "nul", "data": event})
    seen = await one_frame(stage, target, payload)
    assert seen.closed is None
    reply = next(m for m in seen.replies if m.get("re") == "nul")
    assert reply["type"] == "event_recorded" or reply["data"]["code"] == "invalid_message", reply


async def test_a_proctor_sending_a_students_message_is_told_forbidden(stage: Stage) -> None:
    """docs/api.md: proctors may send heartbeat, ping and state_sync_request. Anything else raised
    `Rejected` inside the message handler, which only expects domain errors: the proctor got
    `internal_error` and the worker logged an unhandled exception."""
    payload = json.dumps(
        {"type": "tab_violation", "id": "v1", "data": {"violation_type": "tab_switch"}}
    )
    seen = await one_frame(stage, "session proctor", payload)
    assert seen.closed is None
    assert error_codes(seen) == ["forbidden"]


async def test_every_error_code_the_socket_sends_is_documented(stage: Stage) -> None:
    """A second `auth` on an authenticated socket is answered `already_authenticated`, a code
    docs/api.md once did not list (clients switch on documented codes only)."""
    token = stage.apis["student1"].token
    seen = await one_frame(stage, "attempt", json.dumps({"type": "auth", "data": {"token": token}}))
    codes = error_codes(seen)
    assert codes, seen
    assert set(codes) <= DOCUMENTED, f"undocumented: {set(codes) - DOCUMENTED}"


@pytest.mark.parametrize("target", TARGETS)
async def test_a_frame_over_the_message_limit_gets_message_too_large_and_keeps_the_socket(
    stage: Stage, target: str
) -> None:
    limit = stage.settings.ws_max_message_bytes
    padded = json.dumps({"type": "heartbeat", "data": {}, "pad": "x" * limit})
    seen = await one_frame(stage, target, padded)
    assert seen.closed is None
    assert error_codes(seen) == ["message_too_large"]


async def test_a_frame_beyond_the_transport_limit_closes_with_1009(stage: Stage) -> None:
    """Past four times the message limit the WebSocket layer itself refuses the frame (docs:
    close code 1009); the worker goes on serving everyone else."""
    seen = await one_frame(stage, "attempt", "x" * (4 * stage.settings.ws_max_message_bytes + 1))
    assert seen.closed == 1009
    assert (await one_frame(stage, "attempt", '{"type": "get_progress"}')).closed is None


# ---- a flood beside a well-behaved candidate ----------------------------------------------------


#: what the flooder sends: garbage (each a violation), or valid messages far over the rate
FLOODS = (
    [
        "{not json",
        '{"type": "launch_missiles", "data": {}}',
        '{"type": "submit_answer", "data": {"item_id": "q1", "response": "B", "client_seq": "1"}}',
    ],
    ['{"type": "heartbeat", "data": {}}'],
)


@dataclass
class FloodReport:
    sent: int = 0
    sockets: int = 0
    closes: Counter[int | None] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


async def flood(base_url: str, token: str, attempt_id: str, stop: threading.Event) -> FloodReport:
    """Garbage, or valid messages far over the rate, as fast as the socket takes them; thrown out
    (1008), come straight back with a new ticket."""
    report = FloodReport()
    started = time.perf_counter()
    ws_base = base_url.replace("http://", "ws://")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=f"{base_url}/api/v1", headers=headers, timeout=20
    ) as http:
        while not stop.is_set():
            ticket = await http.post("/ws-tickets", json={"attempt_id": attempt_id})
            if ticket.status_code != 201:
                report.refused[f"ticket {ticket.status_code}"] += 1
                await asyncio.sleep(0.05)
                continue
            url = f"{ws_base}/api/v1/attempts/{attempt_id}/ws?ticket={ticket.json()['ticket']}"
            try:
                connection = await websockets.connect(url, open_timeout=10, max_size=None)
            except (OSError, websockets.InvalidHandshake) as exc:
                report.refused[type(exc).__name__] += 1
                continue
            report.sockets += 1
            burst = FLOODS[report.sockets % 2]
            reader = asyncio.create_task(_read_errors(connection, report))
            try:
                while not stop.is_set():
                    for frame in burst:
                        await connection.send(frame)
                        report.sent += 1
                    await asyncio.sleep(0)
            except ConnectionClosed:
                report.closes[connection.close_code] += 1  # the server threw it out
            finally:
                await connection.close()
                await reader
    report.seconds = time.perf_counter() - started
    return report


async def _read_errors(connection: websockets.ClientConnection, report: FloodReport) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in connection:
            message = json.loads(raw)
            if message["type"] == "error":
                report.errors[message["data"]["code"]] += 1


async def well_behaved(stage: Stage, answers: int, first_seq: int) -> list[float]:
    """A candidate answering at a human-fast pace (well under the rate limit), each answer waited
    for; returns each acknowledgement's latency in seconds."""
    connection = await stage.connect("attempt")
    latencies: list[float] = []
    try:
        for n in range(answers):
            seq, msg_id = first_seq + n, f"a{first_seq + n}"
            data = {"item_id": ITEMS[n % 4], "response": "ABCD"[n % 4], "client_seq": seq}
            sent = time.perf_counter()
            await connection.send(json.dumps({"type": "submit_answer", "id": msg_id, "data": data}))
            async with asyncio.timeout(30):
                while True:
                    message = json.loads(await connection.recv())
                    if message.get("re") == msg_id:
                        break
            latencies.append(time.perf_counter() - sent)
            assert message["type"] == "answer_feedback", message
            assert message["data"]["applied"] is True, message
            await asyncio.sleep(0.06)
    finally:
        await connection.close()
    return latencies


def percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"


async def test_a_flood_beside_a_well_behaved_candidate_costs_them_nothing(
    pg_url: str, redis_url: str
) -> None:
    async with staged(make_settings(pg_url, redis_url)) as stage:  # the documented limits
        flooder = stage.apis["student2"]
        target = await stage.fresh_attempt("student2")
        baseline = await well_behaved(stage, answers=30, first_seq=1)
        stop = threading.Event()
        outcome: list[FloodReport] = []
        thread = threading.Thread(
            target=lambda: outcome.append(
                asyncio.run(flood(stage.served.url, flooder.token, target, stop))
            ),
            name="flooder",
        )
        thread.start()
        try:
            await asyncio.sleep(0.5)  # the flood is on
            under_flood = await well_behaved(stage, answers=60, first_seq=1001)
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, 30)
        async with stage.sessions() as s:
            stored = set(
                await s.scalars(
                    select(ResponseEvent.client_seq).where(
                        ResponseEvent.attempt_id == uuid.UUID(stage.attempt_id)
                    )
                )
            )
        logged = stage.errors.take()
    (report,) = outcome
    print(
        f"\nflood: {report.sent} frames over {report.sockets} sockets in {report.seconds:.1f} s "
        f"({report.sent / report.seconds:.0f}/s); closes {dict(report.closes)}; "
        f"errors {dict(report.errors)}; refused {dict(report.refused)}\n"
        f"well-behaved acks, baseline: {percentiles(baseline)}\n"
        f"well-behaved acks, under flood: {percentiles(under_flood)}"
    )
    assert stored == set(range(1, 31)) | set(range(1001, 1061))
    assert not logged, f"the server logged errors: {logged}"
    assert report.sockets >= 2, report  # thrown out at least once, and came back
    assert set(report.closes) <= CLOSE_CODES, report.closes
    assert report.closes[1008] >= 1, report.closes
    assert "internal_error" not in report.errors, report.errors
    assert {"invalid_json", "rate_limited"} <= set(report.errors), report.errors
    # Not a benchmark: a bound that only a starved candidate would cross.
    assert max(under_flood) < 5.0, percentiles(under_flood)
