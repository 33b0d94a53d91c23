"""Test policies enforced by the server, over the real API on both deployments: the grading
queue, per-item and after-submission feedback, the review policy, results across attempts and
the deadline's submission window."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from delivery_service.storage.models import Attempt, LedgerEvent
from tests.integration.conftest import World
from tests.support import sample_test

ESSAY = {"identifier": "essay", "type": "extended_text", "prompt": "Explain.", "points": 4}


async def new_test(world: World, **overrides: Any) -> str:
    created = await world.teacher.post("/tests", sample_test(**overrides), expect=201)
    return str(created["id"])


async def started(world: World, test_id: str, student: Any = None) -> str:
    who = student or world.student
    attempt = await who.post("/attempts", {"test_id": test_id}, expect=201)
    await who.post(f"/attempts/{attempt['id']}/start")
    return str(attempt["id"])


async def answer(world: World, aid: str, item: str, response: Any, seq: int, **kw: Any) -> Any:
    return await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": item, "response": response, "client_seq": seq}, **kw
    )


async def ledger_types(world: World, aid: str) -> list[str]:
    async with world.sessions() as s:
        rows = await s.scalars(
            select(LedgerEvent.type)
            .where(LedgerEvent.attempt_id == uuid.UUID(aid))
            .order_by(LedgerEvent.seq)
        )
        return list(rows)


async def test_an_essay_waits_in_the_grading_queue_and_the_grade_makes_the_result_final(
    world: World,
) -> None:
    items = sample_test()["items"][:2] + [ESSAY]
    test_id = await new_test(world, items=items, policies={"pass_mark": 0.5})
    aid = await started(world, test_id)
    await answer(world, aid, "q1", "B", 1)
    await answer(world, aid, "essay", "Because of entropy.", 2)
    await world.student.post(f"/attempts/{aid}/submit")

    review = await world.student.get(f"/attempts/{aid}/review")
    assert review["result"] | {"score": 1.0, "max_score": 6.0, "pending_grades": 1,
                               "final": False, "passed": None} == review["result"]  # fmt: skip
    assert review["items"] is None  # the default review policy shows the score only
    refused = await world.student.get("/grading", expect=403)
    assert refused["error"]["code"] == "forbidden"

    (task,) = await world.teacher.get(f"/grading?test_id={test_id}")
    assert task | {"attempt_id": aid, "item_id": "essay", "candidate": "student1",
                   "response": "Because of entropy.", "max_score": 4.0, "grade": None,
                   "prompt": "Explain."} == task  # fmt: skip
    too_much = await world.teacher.post(f"/grading/{aid}/essay", {"score": 5}, expect=422)
    assert too_much["error"]["code"] == "grade_out_of_range"
    not_essay = await world.teacher.post(f"/grading/{aid}/q1", {"score": 1}, expect=409)
    assert not_essay["error"]["code"] == "not_gradable"

    graded = await world.teacher.post(f"/grading/{aid}/essay", {"score": 3})
    assert graded["result"] | {"score": 4.0, "pending_grades": 0, "final": True,
                               "passed": True} == graded["result"]  # fmt: skip
    assert await world.teacher.get(f"/grading?test_id={test_id}") == []
    (done,) = await world.teacher.get(f"/grading?test_id={test_id}&status=graded")
    assert done["grade"] == 3.0
    assert done["graded_by"] is not None

    unexplained = await world.teacher.post(f"/grading/{aid}/essay", {"score": 1}, expect=422)
    assert unexplained["error"]["code"] == "reason_required"
    changed = await world.teacher.post(
        f"/grading/{aid}/essay", {"score": 1, "reason": "second marker"}
    )
    assert changed["result"] | {"score": 2.0, "passed": False} == changed["result"]
    async with world.sessions() as s:
        attempt = await s.get(Attempt, uuid.UUID(aid))
        assert attempt is not None
        assert (attempt.score, attempt.passed) == (2.0, False)
    types = await ledger_types(world, aid)
    assert types[-4:] == ["attempt_submitted", "item_graded", "result_final", "grade_changed"]


async def test_grading_is_refused_while_the_attempt_runs(world: World) -> None:
    test_id = await new_test(world, items=[ESSAY])
    aid = await started(world, test_id)
    await answer(world, aid, "essay", "Draft.", 1)
    early = await world.teacher.post(f"/grading/{aid}/essay", {"score": 1}, expect=409)
    assert early["error"]["code"] == "attempt_not_final"
    assert await world.teacher.get(f"/grading?test_id={test_id}") == []
    not_yet = await world.student.get(f"/attempts/{aid}/review", expect=409)
    assert not_yet["error"]["code"] == "attempt_not_final"


async def test_per_item_feedback_scores_each_answer_and_locks_the_item(world: World) -> None:
    test_id = await new_test(world, policies={"feedback": "per_item", "review": "responses"})
    aid = await started(world, test_id)
    ack = await answer(world, aid, "q1", "A", 1)
    assert ack["feedback"] == {"item_id": "q1", "response": ["A"], "score": 0.0,
                               "max_score": 1.0, "correct": False, "pending": False,
                               "correct_response": None}  # fmt: skip
    locked = await answer(world, aid, "q1", "B", 2, expect=409)
    assert locked["error"]["code"] == "item_locked"
    replay = await answer(world, aid, "q1", "A", 1)
    assert replay["duplicate"] is True
    assert replay["feedback"] == ack["feedback"]
    right = await answer(world, aid, "q2", "B", 3)
    assert right["feedback"]["correct"] is True
    assert right["feedback"]["score"] == 1.0
    await world.student.post(f"/attempts/{aid}/submit")
    async with world.sessions() as s:
        attempt = await s.get(Attempt, uuid.UUID(aid))
        assert attempt is not None
        assert attempt.score == 1.0
    review = await world.student.get(f"/attempts/{aid}/review")
    by_item = {i["item_id"]: i for i in review["items"]}
    assert by_item["q1"]["correct"] is False
    assert by_item["q1"]["correct_response"] is None
    assert by_item["q4"]["response"] is None
    assert by_item["q4"]["score"] == 0.0


async def test_without_feedback_an_answer_can_change_and_nothing_is_told(world: World) -> None:
    test_id = await new_test(world)
    aid = await started(world, test_id)
    first = await answer(world, aid, "q1", "A", 1)
    second = await answer(world, aid, "q1", "B", 2)
    assert first["feedback"] is None
    assert second["feedback"] is None
    assert second["applied"]


async def test_after_submission_feedback_and_a_full_review(world: World) -> None:
    test_id = await new_test(world, policies={"feedback": "after_submission", "review": "full"})
    aid = await started(world, test_id)
    first = await answer(world, aid, "q3", ["A"], 1)
    assert first["feedback"] is None
    done = await world.student.post(f"/attempts/{aid}/submit")
    by_item = {i["item_id"]: i for i in done["feedback"]}
    assert set(by_item) == {"q1", "q2", "q3", "q4"}
    assert by_item["q3"] | {"correct": False, "correct_response": ["A", "C"]} == by_item["q3"]
    review = await world.student.get(f"/attempts/{aid}/review")
    assert review["review"] == "full"
    assert {i["item_id"]: i["correct_response"] for i in review["items"]}["q1"] == ["B"]


async def test_a_review_policy_of_none_shows_the_candidate_nothing(world: World) -> None:
    test_id = await new_test(world, policies={"review": "none"})
    aid = await started(world, test_id)
    await answer(world, aid, "q1", "B", 1)
    done = await world.student.post(f"/attempts/{aid}/submit")
    assert done["feedback"] is None
    hidden = await world.student.get(f"/attempts/{aid}/review", expect=403)
    assert hidden["error"]["code"] == "review_not_allowed"
    results = await world.student.get(f"/tests/{test_id}/results", expect=403)
    assert results["error"]["code"] == "review_not_allowed"
    staff = await world.teacher.get(f"/attempts/{aid}/review")
    assert staff["review"] == "full"
    assert staff["result"]["score"] == 1.0
    assert (await world.other.get(f"/attempts/{aid}/review", expect=404))["error"]["code"] == (
        "attempt_not_found"
    )


async def test_results_across_attempts_follow_the_attempt_scoring_policy(world: World) -> None:
    results = {}
    for policy in ("highest", "last", "first", "average"):
        test_id = await new_test(
            world, attempt_limit=3, policies={"attempt_scoring": policy, "pass_mark": 0.4}
        )
        for seq, right in enumerate((1, 3, 2), start=1):  # three attempts: 1, 3 and 2 right
            aid = await started(world, test_id)
            for n in range(1, right + 1):
                await answer(world, aid, f"q{n}", ["A", "C"] if n == 3 else "B", seq * 10 + n)
            await world.student.post(f"/attempts/{aid}/submit")
        (mine,) = await world.student.get(f"/tests/{test_id}/results")
        assert [a["score"] for a in mine["attempts"]] == [1.0, 3.0, 2.0]
        results[policy] = (mine["result"], mine["passed"])
        staff = await world.teacher.get(f"/tests/{test_id}/results")
        assert [r["username"] for r in staff] == ["student1"]
    assert results == {"highest": (3.0, True), "last": (2.0, True), "first": (1.0, False),
                       "average": (2.0, True)}  # fmt: skip


async def test_a_grace_policy_leaves_a_window_where_only_submitting_is_allowed(
    world: World,
) -> None:
    grace = await new_test(world, policies={"deadline": "grace", "grace_seconds": 300})
    aid = await started(world, grace)
    await answer(world, aid, "q1", "B", 1)
    timer = await world.teacher.post(
        f"/attempts/{aid}/extend", {"seconds": -595, "reason": "move the deadline back"}
    )
    assert timer["remaining_ms"] <= 5000
    # Past the deadline and the network grace, inside the test's submission window.
    await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": -10, "reason": "again"})
    late = await answer(world, aid, "q2", "B", 2, expect=409)
    assert late["error"]["code"] == "deadline_passed"
    moved = await world.student.post(f"/attempts/{aid}/navigate", {"to": "next"}, expect=409)
    assert moved["error"]["code"] == "deadline_passed"
    assert (await world.student.get(f"/attempts/{aid}"))["state"] == "in_progress"
    done = await world.student.post(f"/attempts/{aid}/submit")
    assert done["state"] == "submitted"
    assert done["answered"] == 1
    assert "late_answer_refused" in await ledger_types(world, aid)

    auto = await new_test(world)
    other = await started(world, auto)
    await world.teacher.post(f"/attempts/{other}/extend", {"seconds": -605, "reason": "past"})
    refused = await answer(world, other, "q1", "B", 1, expect=409)
    assert refused["error"]["code"] == "deadline_passed"
    assert (await world.student.get(f"/attempts/{other}"))["state"] == "expired"


async def test_the_sweeper_waits_out_the_submission_window_then_expires(world: World) -> None:
    import asyncio

    test_id = await new_test(world, policies={"deadline": "grace", "grace_seconds": 3})
    aid = await started(world, test_id)
    await answer(world, aid, "q1", "B", 1)
    await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": -601, "reason": "end now"})
    refused = await answer(world, aid, "q2", "B", 2, expect=409)
    assert refused["error"]["code"] == "deadline_passed"
    assert (await world.student.get(f"/attempts/{aid}"))["state"] == "in_progress"
    for _ in range(100):
        state = (await world.student.get(f"/attempts/{aid}"))["state"]
        if state != "in_progress":
            break
        await asyncio.sleep(0.1)
    assert state == "expired"
    async with world.sessions() as s:
        attempt = await s.get(Attempt, uuid.UUID(aid))
        assert attempt is not None
        assert attempt.ended_at is not None
        assert attempt.deadline
        # Not before deadline + network grace (0.5 s) + the window (3 s).
        assert (attempt.ended_at - attempt.deadline).total_seconds() >= 3.5
        assert attempt.score == 1.0


async def test_individual_submission_makes_an_answer_final_when_the_candidate_moves_on(
    world: World,
) -> None:
    test_id = await new_test(world, policies={"submission_mode": "individual"})
    aid = await started(world, test_id)
    await answer(world, aid, "q1", "A", 1)
    await answer(world, aid, "q1", "B", 2)  # still on it: may change
    moved = await world.student.post(f"/attempts/{aid}/navigate", {"to": "next"})
    assert moved["locked"] is False  # q2 is unanswered
    back = await world.student.post(f"/attempts/{aid}/navigate", {"to": 0})
    assert back["locked"] is True
    assert back["response"] == ["B"]
    refused = await answer(world, aid, "q1", "C", 3, expect=409)
    assert refused["error"]["code"] == "item_locked"
    # Visiting an unanswered item and leaving it does not lock it.
    await world.student.post(f"/attempts/{aid}/navigate", {"to": 1})
    await world.student.post(f"/attempts/{aid}/navigate", {"to": 2})
    assert (await answer(world, aid, "q2", "B", 4))["applied"] is True


async def test_a_section_time_limit_closes_its_section_and_moves_on(world: World) -> None:
    blueprint = {"sections": [
        {"identifier": "s1", "items": ["q1", "q2"], "time_limit_seconds": 60},
        {"identifier": "s2", "items": ["q3", "q4"]},
    ]}  # fmt: skip
    test_id = await new_test(world, blueprint=blueprint)
    aid = await started(world, test_id)
    current = await world.student.get(f"/attempts/{aid}/current")
    timed = current["section_time"]
    assert timed["section"] == "s1"
    assert timed["limit_seconds"] == 60
    assert 55_000 < timed["remaining_ms"] <= 60_000
    assert timed["deadline"].endswith("Z")
    await answer(world, aid, "q1", "B", 1)
    # A pause stops the section's clock too; a resume starts it again.
    await world.student.post(f"/attempts/{aid}/pause")
    async with world.sessions() as s:
        row = await s.get(Attempt, uuid.UUID(aid))
        assert row is not None
        assert row.layout is not None
        assert row.layout["clock"]["s1"]["entered"] is None
        assert row.layout["clock"]["s1"]["used_ms"] < 60_000
    await world.student.post(f"/attempts/{aid}/resume")
    resumed = (await world.student.get(f"/attempts/{aid}/current"))["section_time"]
    assert resumed["deadline"] is not None
    assert resumed["remaining_ms"] <= timed["remaining_ms"]
    # 61 seconds spent in s1 (the clock is in the attempt's layout).
    async with world.sessions() as s, s.begin():
        row = await s.get(Attempt, uuid.UUID(aid))
        assert row is not None
        assert row.layout is not None
        clock = dict(row.layout["clock"])
        clock["s1"] = dict(clock["s1"]) | {"used_ms": 61_000}
        row.layout = dict(row.layout) | {"clock": clock}
    over = await answer(world, aid, "q2", "B", 2, expect=409)
    assert over["error"]["code"] == "section_time_over"
    assert over["error"]["details"]["section"] == "s1"
    spent = await world.student.get(f"/attempts/{aid}/current")
    assert spent["section_time"]["remaining_ms"] == 0
    moved = await world.student.post(f"/attempts/{aid}/navigate", {"to": "next"})
    assert moved["item"]["item_id"] == "q3"  # "next" skipped q2: s1's time is spent
    assert moved["section_time"] is None
    back = await world.student.post(f"/attempts/{aid}/navigate", {"to": 1}, expect=409)
    assert back["error"]["code"] == "section_time_over"
    assert (await answer(world, aid, "q3", "B", 3))["applied"] is True
    done = await world.student.post(f"/attempts/{aid}/submit")
    assert done["answered"] == 2


async def test_a_rebuild_larger_than_one_pipeline_restores_every_timer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild goes in batches; the last, partial one counts as much as the full ones."""
    from delivery_service.live import timers

    monkeypatch.setattr(timers, "RESTORE_BATCH", 2)
    runtime = world.served.runtime
    now = runtime.clock.now()
    running = [(f"rebuild-{n}", now + timedelta(minutes=5), timedelta(0)) for n in range(5)]
    assert await runtime.timers.restore(running, now) == 5
    for ident, _, _ in running:
        assert await runtime.redis.zscore(runtime.keys.deadlines, ident) is not None
        assert await runtime.redis.exists(runtime.keys.timer(ident))
        await runtime.timers.cancel(ident)


async def test_a_rebuilt_timer_keeps_the_submission_window(world: World) -> None:
    """Redis lost the deadline entry: the reconcile pass restores it at deadline + network
    grace + the test's window, so the sweeper does not expire an attempt inside its window."""
    from delivery_service.live.timers import epoch_ms

    test_id = await new_test(world, policies={"deadline": "grace", "grace_seconds": 300})
    aid = await started(world, test_id)
    await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": -605, "reason": "end now"})
    runtime = world.served.runtime
    await runtime.redis.zrem(runtime.keys.deadlines, aid)
    await runtime.sweeper.reconcile()
    async with world.sessions() as s:
        row = await s.get(Attempt, uuid.UUID(aid))
        assert row is not None
        assert row.deadline is not None
        due = row.deadline + world.settings.grace + timedelta(seconds=300)
    assert await runtime.redis.zscore(runtime.keys.deadlines, aid) == epoch_ms(due)
    await runtime.sweeper.sweep_once()
    assert (await world.student.get(f"/attempts/{aid}"))["state"] == "in_progress"
