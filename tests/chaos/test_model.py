"""Model-based testing of a candidate's attempts against a real worker (issue 17).

Why: each fault test tries one bad day; a Hypothesis state machine tries many orders of ordinary
and bad events (answers over REST and the socket, disconnects, pauses, staff extensions, submits,
the clock running out, a worker restarted, Redis emptied) and after every step checks the
promises everything else rests on (DESIGN.md §2-§4), against PostgreSQL and the API:

- no answer is acknowledged after deadline + grace (the ledger, walked in order, shows every saved
  answer inside a running clock; an answer refused as late leaves the attempt expired);
- remaining time never grows except by an audited extension (`time_extended` in the ledger), and
  the deadline the database holds is the one the ledger's events add up to;
- terminal states (submitted, expired, terminated) absorb: nothing leaves them, nothing is written
  after them;
- acknowledged answers are exactly the stored ones (`response_history`), and each item's stored
  value is the one of its highest acknowledged `client_seq`;
- an attempt past deadline + grace is expired within seconds (the sweeper), whatever happened to
  its worker or to Redis; and the server logs no error.

The server runs in-process (`running_server`) on the real PostgreSQL and Redis, in an event loop of
its own thread, because Hypothesis drives a state machine synchronously. The database clock
decides, so time passes by real sleeps on a short exam (10 s, cut by 2-6 s with a staff extension
at the start: the API refuses less than 10 s). "Kill worker" stops the in-process server (its
sockets get 1012) and starts another on the same PostgreSQL and Redis; "flush Redis" is FLUSHDB.

Default: a few short runs. `pytest -m long tests/chaos/test_model.py` runs many more.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from websockets.exceptions import ConnectionClosed

from delivery_service.settings import Settings
from delivery_service.storage.database import create_sessionmaker
from delivery_service.storage.ledger import attempt_chain
from delivery_service.storage.models import Attempt, Item, ItemState, LedgerEvent, ResponseEvent
from tests.chaos.threaded import ServerErrors, ServerThread
from tests.conftest import make_settings
from tests.support import HOMEROOM, PASSWORD, Socket, add_class, add_user, sample_test

T = TypeVar("T")

FINAL = frozenset({"submitted", "expired", "terminated"})
ITEMS = ("q1", "q2", "q3", "q4")
# Choice identifiers (one, or None to clear); q3 has two correct choices, so it takes a list too.
RESPONSES: dict[str, list[str | list[str] | None]] = {
    item: ["A", "B", "C", "D", None, *([["A", "C"]] if item == "q3" else [])] for item in ITEMS
}
# Expiry is the sweeper's job: every 0.1 s here, and after Redis lost its timers, the next
# reconcile (every 1 s here) re-arms them. Past deadline + grace + this, it must have happened.
EXPIRY_SLACK = timedelta(seconds=3)
MS = timedelta(milliseconds=1)


# ---- the server and its clients, in a thread of their own ---------------------------------------


@dataclass
class Reply:
    status: int
    body: Any

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("code"))
        return None


class Harness:
    """Everything the model needs: the worker, the users' tokens, and PostgreSQL and Redis for
    the checks (and for emptying Redis)."""

    def __init__(self, settings: Settings) -> None:
        self.server = ServerThread(settings)
        self.settings = settings
        self.tokens: dict[str, str] = {}
        self.tally: Counter[str] = Counter()
        self.engine: AsyncEngine | None = None
        self.redis: Redis | None = None

    async def setup(self) -> None:
        self.engine = create_async_engine(self.settings.database_url, poolclass=NullPool)
        sessions = create_sessionmaker(self.engine)
        student = await add_user(sessions, "student1")
        await add_user(sessions, "admin", "admin")
        teacher = await add_user(sessions, "teacher", "teacher")
        await add_class(sessions, HOMEROOM, teachers=[teacher], students=[student])
        self.redis = Redis.from_url(self.settings.redis_url)
        await self.server.start_worker()
        async with httpx.AsyncClient(base_url=self.server.url, timeout=20) as http:
            for name in ("student1", "admin", "teacher"):
                reply = await http.post(
                    "/api/v1/auth/login", json={"username": name, "password": PASSWORD}
                )
                reply.raise_for_status()
                self.tokens[name] = reply.json()["access_token"]

    async def teardown(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        if self.engine is not None:
            await self.engine.dispose()

    def db(self) -> AsyncEngine:
        if self.engine is None:
            raise RuntimeError("harness not set up")
        return self.engine

    async def call(self, who: str, method: str, path: str, body: Any = None) -> Reply:
        async with httpx.AsyncClient(
            base_url=f"{self.server.url}/api/v1",
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            timeout=30,
        ) as http:
            response = await http.request(method, path, json=body)
        try:
            parsed = response.json()
        except ValueError:
            parsed = response.text
        return Reply(response.status_code, parsed)

    async def open_socket(self, attempt_id: str) -> Socket:
        ticket = await self.call("student1", "POST", "/ws-tickets", {"attempt_id": attempt_id})
        assert ticket.status == 201, ticket.body
        base = self.server.url.replace("http://", "ws://")
        url = f"{base}/api/v1/attempts/{attempt_id}/ws?ticket={ticket.body['ticket']}"
        connection = await websockets.connect(url, open_timeout=10)
        return Socket(connection)

    async def flush_redis(self) -> None:
        if self.redis is None:
            raise RuntimeError("harness not set up")
        await self.redis.flushdb()


# ---- what the model remembers of one attempt ----------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """An answer as the candidate sends it (over the socket, opening one if needed, or REST),
    and how its client_seq is chosen: the next one (after a gap of `gap`) or, when `stale`, an
    unused one below the highest (a late retry)."""

    item: str
    response: str | list[str] | None
    stale: bool
    gap: int
    over_socket: bool


SENT = st.sampled_from(ITEMS).flatmap(
    lambda item: st.builds(
        Sent,
        item=st.just(item),
        response=st.sampled_from(RESPONSES[item]),
        stale=st.booleans(),
        gap=st.integers(1, 3),
        over_socket=st.booleans(),
    )
)


@dataclass
class Answer:
    item: str
    response: Any  # as stored: a choice list or None

    @classmethod
    def of(cls, sent: Sent) -> Answer:
        response = [sent.response] if isinstance(sent.response, str) else sent.response
        return cls(sent.item, response)


@dataclass
class Observation:
    remaining_ms: int
    extended_ms: int  # the sum of audited extensions when this was seen


@dataclass
class AttemptRecord:
    id: str
    state: str
    deadline: datetime | None = None
    acked: dict[int, Answer] = field(default_factory=dict)
    used_seqs: set[int] = field(default_factory=set)
    final: tuple[str, str] | None = None  # (state, ended_at) once seen
    seen: Observation | None = None
    # A refusal that says the attempt is no longer writable; checked against the database.
    refused_as: str | None = None

    def top_acked(self, item: str) -> int | None:
        seqs = [seq for seq, answer in self.acked.items() if answer.item == item]
        return max(seqs) if seqs else None


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---- the model ----------------------------------------------------------------------------------


class CandidateModel(RuleBasedStateMachine):
    """One candidate, one test, attempt after attempt; a proctor (an admin) and an operator
    meddle. `run_model` binds a subclass to a running harness."""

    harness: Harness

    def __init__(self) -> None:
        super().__init__()
        self.test_id = ""
        self.attempts: list[AttemptRecord] = []
        self.socket: Socket | None = None

    # ---- helpers ------------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return self.harness.server.run(coroutine, timeout)

    def call(self, who: str, method: str, path: str, body: Any = None) -> Reply:
        return self.run(self.harness.call(who, method, path, body))

    @property
    def current(self) -> AttemptRecord | None:
        return self.attempts[-1] if self.attempts else None

    def expect_refusal(self, reply: Reply, allowed: set[str], what: str) -> None:
        assert reply.status < 500, f"{what}: server error {reply.status} {reply.body}"
        assert reply.code in allowed, f"{what}: unexpected refusal {reply.status} {reply.body}"

    def took_state(self, record: AttemptRecord, state: str, timer: dict[str, Any] | None) -> None:
        """A successful reply moved the attempt; a final state is never left."""
        assert record.final is None or record.final[0] == state, (
            f"attempt {record.id} left its final state {record.final} for {state}"
        )
        record.state = state
        if timer is not None and timer.get("deadline"):
            record.deadline = parse_time(timer["deadline"])

    def step(self, text: str) -> None:
        """Say what happened (printed with a failing run) and count it (printed after the run)."""
        note(text)
        kind = re.sub(
            r"\d+(\.\d+)?", "N", re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "", text)
        )
        self.harness.tally[kind] += 1

    def close_socket(self) -> None:
        socket, self.socket = self.socket, None
        if socket is not None:
            self.run(socket.connection.close())

    def teardown(self) -> None:
        self.close_socket()

    # ---- rules: the candidate -----------------------------------------------------------------

    @initialize(over_socket=st.booleans(), shorten=st.integers(2, 6))
    def a_candidate_starts_a_short_test(self, over_socket: bool, shorten: int) -> None:
        spec = sample_test(title="model", time_limit_seconds=10, attempt_limit=100)
        created = self.call("teacher", "POST", "/tests", spec)
        assert created.status == 201, created.body
        self.test_id = created.body["id"]
        self.start(over_socket, shorten)

    # Rules have no preconditions on what the server decided (an expiry comes by the clock, so
    # it differs between runs of the same steps, which Hypothesis takes for a flaky strategy):
    # each rule does what a client would do in whatever state the attempt is in.

    @rule(over_socket=st.booleans(), shorten=st.integers(2, 6))
    def start(self, over_socket: bool, shorten: int) -> None:
        """Ask for an attempt: a new one when the last is over (started over REST or the socket,
        then cut to 4-8 s by a proctor: the API refuses time limits under 10 s), else the one
        still open, again."""
        previous = self.current
        created = self.call("student1", "POST", "/attempts", {"test_id": self.test_id})
        if created.status == 200:
            # "200 with the caller's attempt that is still open": only if nothing ended it.
            assert previous is not None, created.body
            assert created.body["id"] == previous.id, (created.body, previous.id)
            assert previous.final is None, f"a final attempt was handed out again: {previous}"
            self.step(f"start: the open attempt again ({created.body['state']})")
            return
        assert created.status == 201, f"expected a new attempt: {created.status} {created.body}"
        if previous is not None:
            ended = self.run(read_attempt(self.harness.db(), previous.id, self.test_id)).state
            assert ended in FINAL, f"a second attempt while {previous.id} is {ended}"
        record = AttemptRecord(created.body["id"], created.body["state"])
        assert record.state == "not_started"
        self.attempts.append(record)
        self.close_socket()
        if over_socket:
            self.connect(record)
            assert self.socket is not None
            reply = self.run(self.socket.request("start_assessment"))
            assert reply["type"] == "assessment_started", reply
            view = reply["data"]
        else:
            started = self.call("student1", "POST", f"/attempts/{record.id}/start")
            assert started.status == 200, started.body
            view = started.body
        self.took_state(record, view["state"], view["timer"])
        assert record.state == "in_progress"
        cut = self.call(
            "admin", "POST", f"/attempts/{record.id}/extend",
            {"seconds": -shorten, "reason": "model: a short exam"},
        )  # fmt: skip
        assert cut.status == 200, cut.body
        self.took_state(record, "in_progress", cut.body)
        self.step(f"start {record.id} ({10 - shorten}s, socket={over_socket})")

    def connect(self, record: AttemptRecord) -> dict[str, Any]:
        """Open a socket on `record` (closing the one before: a reload, or a second tab that
        supersedes the first); return the state it was greeted with."""
        older = self.socket
        self.socket = self.run(self.harness.open_socket(record.id))
        state: dict[str, Any] = self.run(self.socket.until("attempt_state"))["data"]
        self.run(self.socket.until("timer"))
        if older is not None:
            self.run(older.connection.close())
        if record.final is not None:
            assert state["state"] == record.final[0], (record.final, state["state"])
        return state

    def next_seq(self, record: AttemptRecord, stale: bool, gap: int) -> int:
        top = max(record.used_seqs, default=0)
        unused = sorted(set(range(1, top)) - record.used_seqs)
        seq = unused[-1] if stale and unused else top + gap
        record.used_seqs.add(seq)
        return seq

    def answered(
        self, record: AttemptRecord, seq: int, answer: Answer, ack: dict[str, Any]
    ) -> None:
        """An acknowledgement: never for a final or paused attempt, never late, and applied exactly
        when it is the item's highest acknowledged client_seq."""
        assert record.final is None, f"answer {seq} acked after the attempt ended {record.final}"
        assert record.state == "in_progress", f"answer {seq} acked while {record.state}"
        assert (ack["client_seq"], ack["item_id"]) == (seq, answer.item), ack
        assert ack["duplicate"] is False, f"a fresh client_seq {seq} was called a duplicate: {ack}"
        saved_at = parse_time(ack["saved_at"])
        assert record.deadline is not None
        assert saved_at <= record.deadline + self.harness.settings.grace + MS, (
            f"answer {seq} saved at {saved_at}, after deadline {record.deadline} + grace"
        )
        top = record.top_acked(answer.item)
        assert ack["applied"] is (top is None or seq > top), (
            f"answer {seq} applied={ack['applied']} but the item's top acked seq is {top}"
        )
        record.acked[seq] = answer
        self.harness.tally["answer acked" + ("" if ack["applied"] else ", not applied")] += 1

    def refused(self, record: AttemptRecord, seq: int, reply: Reply) -> None:
        self.expect_refusal(reply, {"deadline_passed", "attempt_not_in_progress"}, f"answer {seq}")
        record.refused_as = reply.code
        self.harness.tally[f"answer refused: {reply.code}"] += 1

    def send_answer(self, answer: Sent) -> None:
        """One answer: over the socket (opening one if none is) when asked for, else over REST."""
        record = self.current
        assert record is not None
        seq = self.next_seq(record, answer.stale, answer.gap)
        data = {"item_id": answer.item, "response": answer.response, "client_seq": seq}
        if answer.over_socket:
            if self.socket is None:
                self.connect(record)
            assert self.socket is not None
            try:
                reply = self.run(self.socket.request("submit_answer", data))
            except (ConnectionClosed, TimeoutError):
                # The socket went away (a restarted worker): like the app's outbox, send the
                # same answer again over REST. Either it was stored (the same ack) or not.
                self.socket = None
                self.resend_over_rest(record, seq, answer)
                return
            if reply["type"] == "answer_feedback":
                self.answered(record, seq, Answer.of(answer), reply["data"])
            else:
                assert reply["type"] == "error", reply
                self.refused(record, seq, Reply(409, {"error": reply["data"]}))
            self.step(f"answer {seq} over the socket: {reply['type']}")
            return
        reply = self.call("student1", "POST", f"/attempts/{record.id}/answers", data)
        if reply.status == 200:
            self.answered(record, seq, Answer.of(answer), reply.body)
        else:
            self.refused(record, seq, reply)
        self.step(f"answer {seq} over REST: {reply.status} {reply.code}")

    def resend_over_rest(self, record: AttemptRecord, seq: int, answer: Sent) -> None:
        data = {"item_id": answer.item, "response": answer.response, "client_seq": seq}
        reply = self.call("student1", "POST", f"/attempts/{record.id}/answers", data)
        self.step(f"answer {seq} resent over REST: {reply.status} {reply.code}")
        if reply.status != 200:
            self.refused(record, seq, reply)
            return
        if not reply.body["duplicate"]:
            self.answered(record, seq, Answer.of(answer), reply.body)
            return
        # Stored before the socket broke: the same ack, and it was acceptable then.
        assert (reply.body["client_seq"], reply.body["item_id"]) == (seq, answer.item)
        top = record.top_acked(answer.item)
        assert reply.body["applied"] is (top is None or seq > top), reply.body
        record.acked[seq] = Answer.of(answer)

    # One argument each for the common rules, none without: Hypothesis tries rules with fewer
    # arguments (then by name) first, so a run's simplest steps are answers, not no-ops.

    @rule(answer=SENT)
    def answer(self, answer: Sent) -> None:
        self.send_answer(answer)

    @rule(answers=st.lists(SENT, min_size=2, max_size=6))
    def answer_a_few(self, answers: list[Sent]) -> None:
        for answer in answers:
            self.send_answer(answer)

    @rule(answer=SENT, offset_ms=st.integers(-400, 900))
    def answer_near_the_deadline(self, answer: Sent, offset_ms: int) -> None:
        """Wait (by the database's clock) until just before or after deadline + grace, then
        answer: the edge where a server that trusted anything but its own clock would slip."""
        record = self.current
        assert record is not None
        timer = self.call("student1", "GET", f"/attempts/{record.id}/timer").body
        if not timer.get("deadline"):
            self.send_answer(answer)  # paused: refused whenever it comes
            return
        wait = self.until_deadline(timer) + offset_ms / 1000
        if wait > 2.5:
            # Rather than sleep for seconds, a proctor takes the time away (audited).
            body = {"seconds": -int(wait - 1.5), "reason": "model: skip to the deadline"}
            cut = self.call("admin", "POST", f"/attempts/{record.id}/extend", body)
            if cut.status == 200:
                self.took_state(record, record.state, cut.body)
                wait = self.until_deadline(cut.body) + offset_ms / 1000
        time.sleep(min(max(wait, 0.0), 3.0))
        self.send_answer(answer)

    def until_deadline(self, timer: dict[str, Any]) -> float:
        """Seconds from the server's now to deadline + grace."""
        target = parse_time(timer["deadline"]) + self.harness.settings.grace
        return (target - parse_time(timer["server_now"])).total_seconds()

    @rule(action=st.sampled_from(["reconnect", "disconnect"]))
    def socket_comes_and_goes(self, action: str) -> None:
        """A new socket (a reload, or a second tab: the older one is superseded), or none."""
        if action == "disconnect":
            self.step("disconnect" if self.socket is not None else "disconnect: none open")
            self.close_socket()
            return
        record = self.current
        assert record is not None
        state = self.connect(record)
        self.step(f"reconnect: {state['state']}")

    @rule(action=st.sampled_from(["pause", "resume"]), by_staff=st.booleans())
    def pause_or_resume(self, action: str, by_staff: bool) -> None:
        record = self.current
        assert record is not None
        who = "admin" if by_staff else "student1"
        reply = self.call(who, "POST", f"/attempts/{record.id}/{action}")
        if reply.status == 200:
            self.took_state(record, reply.body["state"], reply.body["timer"])
            assert record.state == ("paused" if action == "pause" else "in_progress")
        else:
            self.expect_refusal(reply, {"invalid_transition", "deadline_passed"}, action)
        self.step(f"{action} (staff={by_staff}): {reply.status} {reply.code}")

    @rule(seconds=st.integers(-3, 5).filter(bool))
    def extend(self, seconds: int) -> None:
        record = self.current
        assert record is not None
        body = {"seconds": seconds, "reason": "model: staff extension"}
        reply = self.call("admin", "POST", f"/attempts/{record.id}/extend", body)
        if reply.status == 200:
            self.took_state(record, record.state, reply.body)
        else:
            self.expect_refusal(reply, {"invalid_transition", "deadline_passed"}, "extend")
        self.step(f"extend {seconds:+d}s: {reply.status} {reply.code}")

    @rule(how=st.sampled_from(["submit over REST", "submit over the socket", "terminate"]))
    def end(self, how: str) -> None:
        """The candidate submits, or a proctor terminates (each at most once: final absorbs)."""
        record = self.current
        assert record is not None
        allowed = {"invalid_transition", "deadline_passed"}
        if how == "submit over the socket" and self.socket is not None:
            try:
                message = self.run(self.socket.request("end_assessment"))
            except (ConnectionClosed, TimeoutError):
                self.socket = None  # a restarted worker: submit over REST instead
            else:
                if message["type"] == "assessment_completed":
                    self.took_state(record, message["data"]["state"], None)
                    assert record.state == "submitted"
                else:
                    assert message["type"] == "error", message
                    self.expect_refusal(Reply(409, {"error": message["data"]}), allowed, how)
                self.step(f"{how}: {message['type']}")
                return
        if how == "terminate":
            body = {"reason": "model: proctor ends it"}
            reply = self.call("admin", "POST", f"/attempts/{record.id}/terminate", body)
        else:
            reply = self.call("student1", "POST", f"/attempts/{record.id}/submit")
        if reply.status == 200:
            self.took_state(record, reply.body["state"], None)
            assert record.state == ("terminated" if how == "terminate" else "submitted")
        else:
            self.expect_refusal(reply, allowed, how)
        self.step(f"{how}: {reply.status} {reply.code}")

    # ---- rules: time and the operator's bad day ----------------------------------------------

    @rule(seconds=st.floats(0.1, 1.5))
    def time_passes(self, seconds: float) -> None:
        time.sleep(seconds)
        self.step(f"sleep {seconds:.2f}s")

    @rule(what=st.sampled_from(["kill worker", "flush Redis"]))
    def operator_bad_day(self, what: str) -> None:
        if what == "kill worker":
            self.run(self.harness.server.restart_worker())
        else:
            self.run(self.harness.flush_redis())
        self.step(what)

    # ---- invariants ---------------------------------------------------------------------------

    @invariant()
    def the_promises_hold(self) -> None:
        for record in self.attempts:
            self.run(self.check(record))

    async def check(self, record: AttemptRecord) -> None:
        seen = await self.harness.call("student1", "GET", f"/attempts/{record.id}")
        assert seen.status == 200, seen.body
        view = seen.body
        facts = await read_attempt(self.harness.db(), record.id, self.test_id)
        grace = self.harness.settings.grace

        # Terminal states absorb.
        if record.final is not None:
            assert (view["state"], view["ended_at"]) == record.final, (record.final, view)
            assert facts.state == record.final[0], (record.final, facts.state)
        elif view["state"] in FINAL:
            record.final = (view["state"], view["ended_at"])
            self.harness.tally[f"attempt ended: {view['end_reason']}"] += 1
        if record.refused_as is not None:
            # An answer refused as late expired the attempt in the same transaction; one refused
            # as "not in progress" found it paused or over.
            if record.refused_as == "deadline_passed":
                assert facts.state == "expired", (record.refused_as, facts.state)
            else:
                assert facts.state != "in_progress", (record.refused_as, facts.state)
            record.refused_as = None
        record.state = view["state"]

        # The ledger, in order: every saved answer inside a running clock, nothing after the end,
        # and the deadline the database holds is what its events add up to.
        walk = walk_ledger(facts.ledger, grace)
        assert walk.answers_saved == len(facts.history), (walk.answers_saved, len(facts.history))
        if facts.state in ("in_progress", "paused") and walk.deadline is not None:
            assert facts.deadline is not None
            assert abs(walk.deadline - facts.deadline) <= 2 * MS, (walk.deadline, facts.deadline)

        # Remaining time never grows except by an audited extension.
        timer = view["timer"]
        now = parse_time(timer["server_now"])
        extended_ms = walk.extended_seconds * 1000
        if record.seen is not None:
            allowed = max(record.seen.remaining_ms + extended_ms - record.seen.extended_ms, 0)
            assert timer["remaining_ms"] <= allowed + 2, (
                f"remaining time grew from {record.seen.remaining_ms} ms to "
                f"{timer['remaining_ms']} ms with {extended_ms - record.seen.extended_ms} ms "
                "of audited extensions"
            )
        record.seen = Observation(timer["remaining_ms"], extended_ms)
        if view["state"] == "in_progress":
            deadline = parse_time(timer["deadline"])
            assert facts.deadline is not None
            assert abs(deadline - facts.deadline) <= MS, (deadline, facts.deadline)
            assert now <= deadline + grace + EXPIRY_SLACK, (
                f"still running at {now}, {now - deadline} after its deadline {deadline}"
            )

        # Acknowledged answers are exactly the stored ones; each item holds its top acked one.
        stored = {seq: (item, response) for seq, item, response in facts.history}
        assert set(stored) == set(record.acked), (
            f"stored client_seqs {sorted(stored)} != acknowledged {sorted(record.acked)}"
        )
        for seq, answer in record.acked.items():
            assert stored[seq] == (answer.item, answer.response), (seq, stored[seq], answer)
        for item in ITEMS:
            top = record.top_acked(item)
            held = facts.items.get(item)
            if top is None:
                assert held is None or held[1] is None, (item, held)
                continue
            assert held == (record.acked[top].response, top), (item, held, top)


# ---- reading the truth --------------------------------------------------------------------------


@dataclass
class LedgerRow:
    seq: int
    type: str
    at: datetime
    payload: dict[str, Any]
    source: str
    reason: str | None


@dataclass
class AttemptFacts:
    state: str
    deadline: datetime | None
    ledger: list[LedgerRow]
    history: list[tuple[int, str, Any]]  # (client_seq, item identifier, response)
    items: dict[str, tuple[Any, int | None]]  # identifier -> (response, client_seq)


async def read_attempt(engine: AsyncEngine, attempt_id: str, test_id: str) -> AttemptFacts:
    ident = uuid.UUID(attempt_id)
    async with engine.connect() as db:
        state, deadline = (
            await db.execute(select(Attempt.state, Attempt.deadline).where(Attempt.id == ident))
        ).one()
        names = dict(
            (
                await db.execute(
                    select(Item.id, Item.identifier).where(Item.test_id == uuid.UUID(test_id))
                )
            ).all()
        )
        ledger = (
            await db.execute(
                select(
                    LedgerEvent.seq,
                    LedgerEvent.type,
                    LedgerEvent.server_time,
                    LedgerEvent.payload,
                    LedgerEvent.source,
                    LedgerEvent.reason,
                )
                .where(LedgerEvent.chain == attempt_chain(ident))
                .order_by(LedgerEvent.seq)
            )
        ).all()
        history = (
            await db.execute(
                select(ResponseEvent.client_seq, ResponseEvent.item_id, ResponseEvent.response)
                .where(ResponseEvent.attempt_id == ident)
                .order_by(ResponseEvent.client_seq)
            )
        ).all()
        items = (
            await db.execute(
                select(ItemState.item_id, ItemState.response, ItemState.client_seq).where(
                    ItemState.attempt_id == ident
                )
            )
        ).all()
    return AttemptFacts(
        state=state,
        deadline=deadline,
        ledger=[LedgerRow(*row) for row in ledger],
        history=[(seq, names[item], response) for seq, item, response in history],
        items={names[item]: (response, seq) for item, response, seq in items},
    )


@dataclass
class Walk:
    deadline: datetime | None = None
    extended_seconds: int = 0
    answers_saved: int = 0


def walk_ledger(events: list[LedgerRow], grace: timedelta) -> Walk:
    """Replay the attempt's chain: where the clock stood at each event, and what it allowed."""
    walk = Walk()
    state = "not_started"
    paused_at: datetime | None = None
    for event in events:
        type_, at, payload = event.type, event.at, event.payload
        where = f"ledger event {event.seq} ({type_} at {at})"
        if type_ in ("attempt_submitted", "attempt_expired", "attempt_terminated"):
            assert state in ("in_progress", "paused"), f"{where}: ended from {state}"
            state = "ended"
        elif type_ == "attempt_started":
            assert state == "not_started", f"{where}: started from {state}"
            state, walk.deadline = "in_progress", parse_time(payload["deadline"])
        elif type_ == "attempt_paused":
            assert state == "in_progress", f"{where}: paused from {state}"
            state, paused_at = "paused", at
        elif type_ == "attempt_resumed":
            assert state == "paused", f"{where}: resumed from {state}"
            assert paused_at is not None
            assert walk.deadline is not None
            state, walk.deadline = "in_progress", walk.deadline + (at - paused_at)
        elif type_ == "time_extended":
            assert state != "ended", f"{where}: time changed after the end"
            assert event.source == "staff", f"{where}: from {event.source}, not staff"
            assert event.reason, f"{where}: an extension without a reason"
            walk.extended_seconds += int(payload["seconds"])
            if payload.get("deadline"):
                walk.deadline = parse_time(payload["deadline"])
        elif type_ == "answer_saved":
            assert state == "in_progress", f"{where}: an answer saved while {state}"
            assert walk.deadline is not None
            assert at <= walk.deadline + grace + MS, (
                f"{where}: saved after deadline {walk.deadline} + grace {grace}"
            )
            walk.answers_saved += 1
    return walk


# ---- the tests ----------------------------------------------------------------------------------


def model_settings(pg_url: str, redis_url: str) -> Settings:
    return make_settings(
        pg_url,
        redis_url,
        drain_seconds=0,
        reconcile_interval_seconds=1,
        sweep_interval_seconds=0.1,
    )


def run_model(pg_url: str, redis_url: str, runs: settings) -> None:
    harness = Harness(model_settings(pg_url, redis_url))
    errors = ServerErrors()
    try:
        with errors.installed():
            harness.server.run(harness.setup())

            class Bound(CandidateModel):
                pass

            Bound.harness = harness
            run_state_machine_as_test(Bound, settings=runs)
    finally:
        with contextlib.suppress(Exception):
            harness.server.run(harness.teardown())
        harness.server.close()
    tally = ", ".join(f"{k}: {v}" for k, v in sorted(harness.tally.items()))
    print(f"model: {harness.server.restarts} worker restarts; {tally}")
    assert not errors.records, f"the server logged errors: {errors.summary()}"


def budget(examples: int, steps: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        # Real time and a real server: a failing run does not replay identically, so neither
        # shrinking nor replaying a saved failure (a later run's "inconsistent data
        # generation") helps; the failing steps are printed as they ran.
        phases=[Phase.explicit, Phase.generate],
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=True,
    )


def test_attempts_keep_their_promises_under_random_orders_of_events(
    pg_url: str, redis_url: str
) -> None:
    run_model(pg_url, redis_url, budget(examples=6, steps=20))


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_attempts_keep_their_promises_over_a_long_random_run(pg_url: str, redis_url: str) -> None:
    run_model(pg_url, redis_url, budget(examples=80, steps=40))
