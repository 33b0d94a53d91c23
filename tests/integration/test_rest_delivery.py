"""A candidate takes a timed exam over REST, on both deployments."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from delivery_service.storage.models import ItemState, ResponseEvent
from tests.integration.conftest import World


async def test_a_full_exam_over_rest(world: World) -> None:
    test_id = await world.new_test()
    attempt = await world.student.post("/attempts", {"test_id": test_id}, expect=201)
    again = await world.student.post("/attempts", {"test_id": test_id}, expect=200)
    assert again["id"] == attempt["id"]
    assert attempt["state"] == "not_started"
    assert attempt["timer"]["remaining_ms"] == 600_000
    aid = attempt["id"]

    started = await world.student.post(f"/attempts/{aid}/start")
    assert started["state"] == "in_progress"
    assert started["timer"]["running"] is True
    assert 590_000 < started["timer"]["remaining_ms"] <= 600_000

    current = await world.student.get(f"/attempts/{aid}/current")
    assert current["item"]["item_id"] == "q1"
    assert "correct" not in current["item"]
    assert "scoring" not in str(current)

    ack = await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q1", "response": "B", "client_seq": 1}
    )
    assert ack == ack | {"item_id": "q1", "client_seq": 1, "applied": True, "duplicate": False}
    moved = await world.student.post(f"/attempts/{aid}/navigate", {"to": "next"})
    assert moved["position"] == 1
    await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q3", "response": ["C", "A"], "client_seq": 2}
    )
    await world.student.post(f"/attempts/{aid}/flags", {"item_id": "q2", "flagged": True})

    state = await world.student.get(f"/attempts/{aid}")
    assert state["position"] == 1
    assert state["responses"] == {"q1": ["B"], "q3": ["A", "C"]}
    assert state["flags"] == ["q2"]
    assert [i["answered"] for i in state["items"]] == [True, False, True, False]
    assert set(state["timer"]) == {"deadline", "server_now", "remaining_ms", "running"}
    assert state["timer"]["deadline"].endswith("Z")

    done = await world.student.post(f"/attempts/{aid}/submit")
    assert done == done | {"state": "submitted", "reason": "submitted", "answered": 2}
    assert (await world.student.get(f"/attempts/{aid}"))["score"] is None
    graded = await world.teacher.get(f"/attempts/{aid}")
    assert (graded["score"], graded["max_score"]) == (2.0, 4.0)


async def test_login_with_a_wrong_password_is_refused(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.base_url) as http:
        reply = await http.post(
            "/api/v1/auth/login", json={"username": "student1", "password": "nope"}
        )
        unknown = await http.post(
            "/api/v1/auth/login", json={"username": "nobody", "password": "nope"}
        )
        anonymous = await http.get("/api/v1/tests")
        forged = await http.get("/api/v1/tests", headers={"Authorization": "Bearer x.y.z"})
    assert reply.status_code == unknown.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_credentials"
    assert anonymous.status_code == forged.status_code == 401
    assert forged.json()["error"]["code"] == "unauthorized"


async def test_login_reply_has_the_documented_shape(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.base_url) as http:
        body = (
            await http.post(
                "/api/v1/auth/login",
                json={"username": "teacher", "password": "correct horse battery staple"},
            )
        ).json()
    assert set(body) == {"access_token", "token_type", "expires_in", "user", "must_change_password"}
    assert body["token_type"] == "bearer"
    assert body["user"]["role"] == "teacher"


async def test_a_student_cannot_author_tests_or_read_another_candidates_attempt(
    world: World,
) -> None:
    from tests.support import sample_test

    refused = await world.student.post("/tests", sample_test(), expect=403)
    assert refused["error"]["code"] == "forbidden"
    aid = await world.started_attempt()
    hidden = await world.other.get(f"/attempts/{aid}", expect=404)
    assert hidden["error"]["code"] == "attempt_not_found"
    await world.other.post(
        f"/attempts/{aid}/answers", {"item_id": "q1", "response": "A", "client_seq": 1}, expect=404
    )


async def test_students_see_tests_without_their_answers(world: World) -> None:
    test_id = await world.new_test()
    as_student = await world.student.get(f"/tests/{test_id}")
    as_teacher = await world.teacher.get(f"/tests/{test_id}")
    assert as_student["items"] is None
    assert as_teacher["items"][0]["correct"] == ["B"]


async def test_invalid_test_definitions_are_refused_with_details(world: World) -> None:
    from tests.support import sample_test

    spec = sample_test()
    spec["items"][0]["correct"] = ["Z"]
    refused = await world.teacher.post("/tests", spec, expect=422)
    assert refused["error"]["code"] == "validation_error"
    assert "unknown choice" in str(refused["error"]["details"])


async def test_the_attempt_limit_is_respected(world: World) -> None:
    test_id = await world.new_test(attempt_limit=1)
    attempt = await world.student.post("/attempts", {"test_id": test_id}, expect=201)
    await world.student.post(f"/attempts/{attempt['id']}/start")
    await world.student.post(f"/attempts/{attempt['id']}/submit")
    refused = await world.student.post("/attempts", {"test_id": test_id}, expect=409)
    assert refused["error"]["code"] == "attempt_limit_reached"


async def test_the_same_client_seq_twice_writes_once_and_acks_the_same(world: World) -> None:
    aid = await world.started_attempt()
    body = {"item_id": "q1", "response": "B", "client_seq": 7}
    first = await world.student.post(f"/attempts/{aid}/answers", body)
    second = await world.student.post(f"/attempts/{aid}/answers", body)
    assert second["duplicate"] is True
    assert (second["saved_at"], second["applied"]) == (first["saved_at"], first["applied"])
    conflict = await world.student.post(
        f"/attempts/{aid}/answers", {**body, "response": "C"}, expect=409
    )
    assert conflict["error"]["code"] == "client_seq_conflict"
    async with world.sessions() as s:
        rows = (await s.scalars(select(ResponseEvent))).all()
    assert [(r.client_seq, r.response) for r in rows] == [(7, ["B"])]


async def test_a_stale_client_seq_never_overwrites_a_newer_answer(world: World) -> None:
    aid = await world.started_attempt()
    newer = await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q1", "response": "C", "client_seq": 5}
    )
    stale = await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q1", "response": "A", "client_seq": 4}
    )
    assert (newer["applied"], stale["applied"]) == (True, False)
    state = await world.student.get(f"/attempts/{aid}")
    assert state["responses"] == {"q1": ["C"]}
    assert state["last_client_seq"] == 5
    async with world.sessions() as s:
        history = (await s.scalars(select(ResponseEvent).order_by(ResponseEvent.client_seq))).all()
    assert [(h.client_seq, h.response, h.applied) for h in history] == [
        (4, ["A"], False),
        (5, ["C"], True),
    ]


async def test_an_answer_after_deadline_and_grace_is_refused_and_the_attempt_expires(
    world: World,
) -> None:
    aid = await world.started_attempt()
    await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q1", "response": "B", "client_seq": 1}
    )
    await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": -600, "reason": "test"})
    await asyncio.sleep(world.settings.grace_ms / 1000 + 0.2)
    refused = await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q2", "response": "B", "client_seq": 2}, expect=409
    )
    assert refused["error"]["code"] == "deadline_passed"
    state = await world.teacher.get(f"/attempts/{aid}")
    assert (state["state"], state["end_reason"]) == ("expired", "expired")
    assert state["responses"] == {"q1": ["B"]}
    assert state["score"] == 1.0


async def test_the_sweeper_expires_an_attempt_nobody_touches(world: World) -> None:
    aid = await world.started_attempt()
    await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": -599, "reason": "test"})
    for _ in range(60):
        state = await world.student.get(f"/attempts/{aid}")
        if state["state"] == "expired":
            break
        await asyncio.sleep(0.1)
    assert state["state"] == "expired"
    assert state["timer"]["remaining_ms"] == 0


async def test_linear_tests_forbid_going_back(world: World) -> None:
    aid = await world.started_attempt(navigation_mode="linear")
    await world.student.post(f"/attempts/{aid}/navigate", {"to": "next"})
    refused = await world.student.post(f"/attempts/{aid}/navigate", {"to": 0}, expect=403)
    assert refused["error"]["code"] == "navigation_forbidden"
    out = await world.student.post(f"/attempts/{aid}/navigate", {"to": 9}, expect=422)
    assert out["error"]["code"] == "position_out_of_range"


async def test_invalid_transitions_have_a_stable_code(world: World) -> None:
    test_id = await world.new_test()
    attempt = await world.student.post("/attempts", {"test_id": test_id}, expect=201)
    early = await world.student.post(f"/attempts/{attempt['id']}/submit", expect=409)
    assert early["error"]["code"] == "invalid_transition"
    await world.student.post(f"/attempts/{attempt['id']}/start")
    twice = await world.student.post(f"/attempts/{attempt['id']}/start", expect=409)
    assert twice["error"]["code"] == "invalid_transition"


async def test_pause_stops_the_clock_and_refuses_answers_until_resume(world: World) -> None:
    aid = await world.started_attempt()
    paused = await world.student.post(f"/attempts/{aid}/pause")
    assert paused["timer"]["running"] is False
    left = paused["timer"]["remaining_ms"]
    refused = await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q1", "response": "B", "client_seq": 1}, expect=409
    )
    assert refused["error"]["code"] == "attempt_not_in_progress"
    await asyncio.sleep(0.5)
    resumed = await world.student.post(f"/attempts/{aid}/resume")
    assert resumed["timer"]["running"] is True
    assert left - 150 <= resumed["timer"]["remaining_ms"] <= left


async def test_a_test_can_forbid_candidates_from_pausing(world: World) -> None:
    aid = await world.started_attempt(allow_pause=False)
    refused = await world.student.post(f"/attempts/{aid}/pause", expect=403)
    assert refused["error"]["code"] == "pause_not_allowed"
    staff = await world.teacher.post(f"/attempts/{aid}/pause")
    assert staff["state"] == "paused"


async def test_bad_answers_are_refused_and_change_nothing(world: World) -> None:
    aid = await world.started_attempt()
    unknown = await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q99", "response": "A", "client_seq": 1}, expect=422
    )
    assert unknown["error"]["code"] == "unknown_item"
    invalid = await world.student.post(
        f"/attempts/{aid}/answers",
        {"item_id": "q1", "response": ["A", "B"], "client_seq": 2},
        expect=422,
    )
    assert invalid["error"]["code"] == "invalid_response"
    malformed = await world.student.http.post(
        f"/attempts/{aid}/answers",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 422
    assert malformed.json()["error"]["code"] == "validation_error"
    state = await world.student.get(f"/attempts/{aid}")
    assert state["responses"] == {}


async def test_only_staff_terminate(world: World) -> None:
    aid = await world.started_attempt()
    refused = await world.student.post(
        f"/attempts/{aid}/terminate", {"reason": "cheating"}, expect=403
    )
    assert refused["error"]["code"] == "forbidden"
    done = await world.teacher.post(f"/attempts/{aid}/terminate", {"reason": "caught copying"})
    assert done["reason"] == "terminated"


async def test_health_and_readiness(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.base_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] is True


async def test_candidates_list_their_own_attempts_and_staff_filter_anyones(world: World) -> None:
    first = await world.started_attempt()
    theirs = await world.other.post(
        "/attempts", {"test_id": await world.new_test(title="Other")}, expect=201
    )
    mine = await world.student.get("/attempts")
    assert [a["id"] for a in mine] == [first]
    assert mine[0]["test_title"] == "Integration test"
    assert mine[0]["state"] == "in_progress"
    everyone = await world.teacher.get("/attempts")
    assert {a["id"] for a in everyone} == {first, theirs["id"]}
    by_user = await world.teacher.get(f"/attempts?user_id={theirs['user_id']}")
    assert [a["id"] for a in by_user] == [theirs["id"]]


async def test_repeated_failed_logins_are_throttled_per_user(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.base_url) as http:
        codes = []
        for _ in range(world.settings.login_max_failures + 1):
            reply = await http.post(
                "/api/v1/auth/login", json={"username": "student2", "password": "guess"}
            )
            codes.append(reply.status_code)
        right = await http.post(
            "/api/v1/auth/login",
            json={"username": "student2", "password": "correct horse battery staple"},
        )
        other = await http.post(
            "/api/v1/auth/login",
            json={"username": "student1", "password": "correct horse battery staple"},
        )
    assert codes[:-1] == [401] * world.settings.login_max_failures
    assert codes[-1] == 429
    assert right.status_code == 429
    assert right.json()["error"]["code"] == "too_many_attempts"
    assert other.status_code == 200


async def test_a_cleared_answer_no_longer_counts_as_answered(world: World) -> None:
    """Every count agrees: the ack (also when replayed), the attempt view and the database."""
    aid = await world.started_attempt()
    post = world.student.post
    await post(f"/attempts/{aid}/answers", {"item_id": "q1", "response": "B", "client_seq": 1})
    await post(f"/attempts/{aid}/answers", {"item_id": "q2", "response": "A", "client_seq": 2})
    clear = {"item_id": "q1", "response": None, "client_seq": 3}
    ack = await post(f"/attempts/{aid}/answers", clear)
    assert (ack["applied"], ack["answered"]) == (True, 1)
    replayed = await post(f"/attempts/{aid}/answers", clear)
    assert (replayed["duplicate"], replayed["answered"]) == (True, 1)
    view = await world.student.get(f"/attempts/{aid}")
    assert view["responses"] == {"q2": ["A"]}
    assert [i["answered"] for i in view["items"]] == [False, True, False, False]
    async with world.sessions() as s:
        stored = await s.scalar(
            select(func.count()).select_from(ItemState).where(ItemState.response.is_not(None))
        )
    assert stored == 1
    done = await post(f"/attempts/{aid}/submit")
    assert done["answered"] == 1


async def test_an_answer_is_five_statements_in_one_transaction(world: World) -> None:
    """The answer path's shape is a decision (docs/decisions.md, "Statements per answer"): the
    attempt lock, one read after it, the ledger head lock and two writes. Going back to the ORM
    or to a statement per read shows here first. Ordinary items, fresh and replayed."""
    import uuid

    from sqlalchemy import event

    from delivery_service.domain.principal import Principal

    aid = uuid.UUID(await world.started_attempt())
    me = await world.student.get("/auth/me")
    who = Principal(uuid.UUID(me["id"]), "student1", "student")
    attempts = world.served.runtime.attempts.answers
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", ";")):
            seen.append(statement)

    engine = world.served.runtime.engine.sync_engine
    await attempts.save_answer(who, aid, item_id="q1", response="A", client_seq=1)  # warm caches
    event.listen(engine, "before_cursor_execute", count)
    try:
        await attempts.save_answer(who, aid, item_id="q2", response="B", client_seq=2)
        fresh = len(seen)
        await attempts.save_answer(who, aid, item_id="q2", response="B", client_seq=2)
        replayed = len(seen) - fresh
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # SQLite runs each CTE pair as two statements.
    assert fresh == (5 if world.settings.database_url.startswith("postgresql") else 7), seen
    assert replayed == 2, seen[fresh:]
