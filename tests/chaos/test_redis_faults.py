"""Redis emptied, restarted empty, and stalled across a deadline (DESIGN.md §2 rule 4, §3).

Redis only holds copies of the deadlines; PostgreSQL's `deadline` column decides. So whatever
happens to Redis, nobody gains time: the deadline in PostgreSQL never moves, an answer that
arrives after deadline + grace is refused even while Redis is gone or frozen, and an attempt
whose deadline passed during the outage is expired within a sweep interval (and a small margin
for reconnecting and rebuilding the timers) of Redis answering again. A stalled Redis must not
stall liveness: `/healthz` keeps answering.

Restarting, pausing and freezing use a private redis-server (never the machine's shared one);
the flush empties this suite's own database index of the shared one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.chaos.conftest import (
    GRACE,
    SWEEP_INTERVAL,
    TIMEOUT_SECONDS,
    Chaos,
    Exam,
    assert_alive,
    deadline_in,
    eventually,
    probe,
    redis_command,
    until_moment,
)
from tests.cluster.conftest import Worker

pytestmark = pytest.mark.cluster

# After Redis answers again: reconnecting, noticing the lost epoch, rebuilding the timers from
# PostgreSQL, claiming and expiring — well under a second on an idle machine.
EXPIRY_MARGIN = 1.0
LATE = timedelta(seconds=GRACE + 0.5)  # comfortably past deadline + grace
REFUSED = {"deadline_passed", "attempt_not_in_progress"}
# A refusal while Redis hangs may wait out a Redis timeout or two (after-commit steps), no more.
REFUSE_WITHIN = 10.0


async def expired_at(chaos: Chaos, attempt_id: str) -> datetime | None:
    row = await chaos.attempt_row(attempt_id)
    return row["ended_at"] if row["state"] == "expired" else None


async def assert_late_answer_refused(chaos: Chaos, worker: Worker, exam: Exam, n: int) -> float:
    """An answer after deadline + grace is refused, and not stored; returns how long the
    refusal took."""
    aid = exam.attempts[n]
    body = {"item_id": "q1", "response": ["B"], "client_seq": 99}
    reply, took = await probe(
        worker, "POST", f"/api/v1/attempts/{aid}/answers", body, exam.candidates[n].token
    )
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["code"] in REFUSED, reply.text
    assert [r for r in await chaos.stored([aid]) if r["client_seq"] == 99] == []
    return took


async def across_a_deadline(
    chaos: Chaos,
    worker: Worker,
    *,
    outage: Callable[[], Awaitable[None]],
    recovery: Callable[[], Awaitable[datetime]],
) -> dict[str, float]:
    """Two running attempts due in a moment; Redis fails (`outage`) a second before the
    deadline and comes back (`recovery`, which says when) after deadline + grace. Attempt 1
    gets an answer after deadline + grace while Redis is down: refused. Attempt 0 is left alone:
    only the sweeper can expire it, once Redis is back, within an interval and a margin."""
    exam = await chaos.exam(worker, 2)
    deadlines = [await deadline_in(chaos, exam.teacher, aid, 2.5) for aid in exam.attempts]
    await until_moment(min(deadlines) - timedelta(seconds=1.0))
    await outage()
    await assert_alive(worker)
    await until_moment(deadlines[1] + LATE)
    refusal_took = await assert_late_answer_refused(chaos, worker, exam, 1)
    assert refusal_took < REFUSE_WITHIN, f"the refusal took {refusal_took:.1f}s"
    await assert_alive(worker)
    back = await recovery()
    ended = await eventually(
        lambda: expired_at(chaos, exam.attempts[0]), within=30, what="the attempt expires"
    )
    lag = (ended - max(back, deadlines[0] + timedelta(seconds=GRACE))).total_seconds()
    assert lag <= SWEEP_INTERVAL + EXPIRY_MARGIN, f"expired {lag:.2f}s after Redis was back"
    for aid, deadline in zip(exam.attempts, deadlines, strict=True):
        assert (await chaos.attempt_row(aid))["deadline"] == deadline, "the deadline moved"
    return {"expiry_lag_s": round(lag, 2), "late_refusal_s": round(refusal_took, 2)}


async def test_redis_emptied_twice_around_a_deadline_gives_nobody_time(chaos: Chaos) -> None:
    worker = await chaos.worker()
    exam = await chaos.exam(worker, 2)
    deadlines = [await deadline_in(chaos, exam.teacher, aid, 2.5) for aid in exam.attempts]
    redis = chaos.cluster.redis
    await redis.flushdb()  # this suite's own index of the shared Redis
    await until_moment(deadlines[0] - timedelta(seconds=0.3))
    await redis.flushdb()  # again, just before the deadline: the rebuilt timers are gone too
    flushed = datetime.now(UTC)
    await until_moment(deadlines[1] + LATE)
    await assert_late_answer_refused(chaos, worker, exam, 1)
    ended = await eventually(lambda: expired_at(chaos, exam.attempts[0]), within=30)
    due = max(deadlines[0] + timedelta(seconds=GRACE), flushed)
    lag = (ended - due).total_seconds()
    assert lag <= SWEEP_INTERVAL + EXPIRY_MARGIN, f"expired {lag:.2f}s after it was due"
    for aid, deadline in zip(exam.attempts, deadlines, strict=True):
        assert (await chaos.attempt_row(aid))["deadline"] == deadline, "the deadline moved"


async def test_redis_restarted_empty_after_a_deadline_passed_gives_nobody_time(
    chaos: Chaos,
) -> None:
    redis = await chaos.private_redis()
    worker = await chaos.worker()

    async def crash() -> None:
        redis.kill()

    async def restart() -> datetime:
        await asyncio.sleep(1.0)  # down a little longer, past the late answer
        await redis.restart_empty()
        return datetime.now(UTC)

    figures = await across_a_deadline(chaos, worker, outage=crash, recovery=restart)
    print("redis restarted empty:", figures)


@pytest.mark.long
async def test_redis_down_for_twenty_seconds_across_a_deadline_gives_nobody_time(
    chaos: Chaos,
) -> None:
    """The same after a longer outage: what waits for Redis (a backing-off sweeper, a
    reconnecting pool) must not turn a long outage into a long wait once it is back."""
    redis = await chaos.private_redis()
    worker = await chaos.worker()

    async def crash() -> None:
        redis.kill()

    async def restart() -> datetime:
        await asyncio.sleep(15.0)
        await redis.restart_empty()
        return datetime.now(UTC)

    figures = await across_a_deadline(chaos, worker, outage=crash, recovery=restart)
    print("redis down 20 s:", figures)


@pytest.mark.parametrize("stall", ["client_pause", "sigstop"])
async def test_redis_stalled_across_a_deadline_gives_nobody_time(chaos: Chaos, stall: str) -> None:
    redis = await chaos.private_redis()
    worker = await chaos.worker()
    control = redis.client()
    # CLIENT PAUSE cannot be lifted early (CLIENT UNPAUSE waits too): long enough to cover the
    # late answer (2 s in) and its refusal (a Redis timeout or two).
    pause = timedelta(seconds=2 + 2 * TIMEOUT_SECONDS + 1.5)
    paused_until = datetime.now(UTC)

    async def freeze() -> None:
        nonlocal paused_until
        if stall == "sigstop":
            redis.freeze()
        else:
            await redis_command(
                control, "CLIENT", "PAUSE", int(pause / timedelta(milliseconds=1)), "ALL"
            )
            paused_until = datetime.now(UTC) + pause

    async def thaw() -> datetime:
        if stall == "sigstop":
            redis.thaw()
            return datetime.now(UTC)
        await until_moment(paused_until)  # it ends by itself
        return paused_until

    try:
        figures = await across_a_deadline(chaos, worker, outage=freeze, recovery=thaw)
    finally:
        await control.aclose()
    print(f"redis stalled ({stall}):", figures)
