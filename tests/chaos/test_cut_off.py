"""A worker cut off from PostgreSQL or Redis by a firewall (issue 17: iptables DROP).

The fault proxy's blackhole is that DROP: the worker's links stay open and nothing comes back,
not even a reset, so only the worker's own timeouts can tell. It must fail closed within a
bounded time — 503 with the stable code, a socket `error`, /readyz 503 so a load balancer moves
its traffic — and never acknowledge an answer it did not store. The other worker, connected
directly, carries on as if nothing happened, for its own candidates and for those who move to
it, even when the cut landed in the middle of one of the first worker's transactions.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, text

from tests.chaos.candidates import StreamingCandidate
from tests.chaos.conftest import (
    TIMEOUT_SECONDS,
    UNAVAILABLE,
    Chaos,
    assert_alive,
    assert_ready_says,
    assert_unavailable,
    error_code,
    eventually,
    greeted,
    probe,
)
from tests.chaos.proxy import FaultProxy
from tests.cluster.conftest import Worker
from tests.support import PASSWORD, Socket

pytestmark = pytest.mark.cluster

# A request on the cut-off worker gives up within its timeouts (a dead pooled connection's
# check, then a connect) and a margin for a loaded machine.
FAIL_WITHIN = 3 * TIMEOUT_SECONDS + 2.0
NORMAL_LATENCY = 1.0  # an answer on the unaffected worker
# A candidate whose row a cut-off connection had locked answers on the other worker again
# after about a database timeout (PostgreSQL must drop that connection), not "when the
# network is repaired".
UNLOCKED_WITHIN = 10.0


def answer(seq: int) -> dict[str, Any]:
    return {"item_id": f"q{seq % 4 + 1}", "response": ["ABCD"[seq % 3]], "client_seq": seq}


async def post_answer(worker: Worker, token: str, aid: str, seq: int) -> tuple[Any, float]:
    return await probe(worker, "POST", f"/api/v1/attempts/{aid}/answers", answer(seq), token)


async def keep_answering(
    worker: Worker, token: str, aid: str, seqs: list[int], stop: asyncio.Event
) -> list[float]:
    """Answers over REST on an unaffected worker until `stop`: each acknowledged, quickly."""
    latencies = []
    while not stop.is_set():
        seq = seqs[-1] + 1
        reply, took = await post_answer(worker, token, aid, seq)
        assert reply.status_code == 200, reply.text
        seqs.append(seq)
        latencies.append(took)
        await asyncio.sleep(0.1)
    return latencies


async def assert_stored_as_acknowledged(chaos: Chaos, acked: dict[str, list[int]]) -> None:
    stored = await chaos.stored(list(acked))
    assert sorted((r["attempt_id"], r["client_seq"]) for r in stored) == sorted(
        (aid, seq) for aid, seqs in acked.items() for seq in seqs
    ), "stored exactly the acknowledged answers, once each"


async def test_a_worker_cut_off_from_postgresql_fails_closed_while_the_other_carries_on(
    chaos: Chaos,
) -> None:
    link, database_url = await chaos.database_proxy()
    cut, direct = await asyncio.gather(
        chaos.worker(EXAMSERVER_DATABASE_URL=database_url), chaos.worker()
    )
    exam = await chaos.exam(direct, 2)
    (x, y), (x_attempt, y_attempt) = exam.candidates, exam.attempts
    acked: dict[str, list[int]] = {x_attempt: [], y_attempt: [1]}
    await chaos.on(direct, y).post(f"/attempts/{y_attempt}/answers", answer(1))
    on_cut = chaos.on(cut, x)

    async with Socket.open(on_cut.ws_url(x_attempt, ticket=await on_cut.ticket(x_attempt))) as ws:
        await greeted(ws)
        assert (await ws.request("submit_answer", answer(1)))["type"] == "answer_feedback"
        acked[x_attempt].append(1)

        link.blackhole()
        stop = asyncio.Event()
        other = chaos.background(keep_answering(direct, y.token, y_attempt, acked[y_attempt], stop))
        started = time.monotonic()
        refused = await ws.request("submit_answer", answer(2))
        socket_took = time.monotonic() - started
        assert refused["type"] == "error", refused
        assert refused["data"]["code"] == "database_unavailable", refused
        assert socket_took < FAIL_WITHIN, f"the socket's refusal took {socket_took:.1f}s"
        rest_took = []
        for seq in (3, 4):  # the first and a later request alike give up in time
            reply, took = await post_answer(cut, x.token, x_attempt, seq)
            assert_unavailable(reply, "database_unavailable")
            rest_took.append(round(took, 2))
        credentials = {"username": "student1", "password": PASSWORD}
        login, took = await probe(cut, "POST", "/api/v1/auth/login", credentials)
        assert_unavailable(login, "database_unavailable")
        rest_took.append(round(took, 2))
        assert max(rest_took) < FAIL_WITHIN, rest_took
        ready_took = await assert_ready_says(cut, 503)
        await assert_alive(cut)

        # The candidate moves to the other worker (as the load balancer would): as usual there.
        for seq in (2, 3, 4):
            reply, took = await post_answer(direct, x.token, x_attempt, seq)
            assert reply.status_code == 200, reply.text
            assert took < NORMAL_LATENCY, took
            acked[x_attempt].append(seq)
        stop.set()
        latencies = await other
        assert latencies, "the other worker's candidate answered meanwhile"
        assert max(latencies) < NORMAL_LATENCY, latencies

        await link.restore()

        async def answers_again() -> bool:
            reply, _ = await post_answer(cut, x.token, x_attempt, 5)
            return bool(reply.status_code == 200)

        await eventually(answers_again, within=15, every=0.5, what="the cut-off worker recovers")
        acked[x_attempt].append(5)

    await assert_stored_as_acknowledged(chaos, acked)
    print(
        f"cut off from PostgreSQL: /readyz {ready_took:.2f}s, socket {socket_took:.1f}s, "
        f"REST {rest_took}s; other worker {len(latencies)} answers, max {max(latencies):.2f}s"
    )


async def test_a_worker_cut_off_from_redis_fails_closed_while_the_other_carries_on(
    chaos: Chaos,
) -> None:
    link, redis_url = await chaos.redis_proxy()
    cut, direct = await asyncio.gather(chaos.worker(EXAMSERVER_REDIS_URL=redis_url), chaos.worker())
    exam = await chaos.exam(direct, 2)
    (x, y), (x_attempt, y_attempt) = exam.candidates, exam.attempts
    acked: dict[str, list[int]] = {x_attempt: [], y_attempt: [0]}
    await chaos.on(direct, y).post(f"/attempts/{y_attempt}/answers", answer(0))

    link.blackhole()
    stop = asyncio.Event()
    other = chaos.background(keep_answering(direct, y.token, y_attempt, acked[y_attempt], stop))
    timings = {"readyz": await assert_ready_says(cut, 503)}
    await assert_alive(cut)

    credentials = {"username": "student1", "password": PASSWORD}
    login, timings["login"] = await probe(cut, "POST", "/api/v1/auth/login", credentials)
    assert_unavailable(login, "redis_unavailable")
    ticket, timings["ticket"] = await probe(cut, "POST", "/api/v1/ws-tickets", {}, x.token)
    assert_unavailable(ticket, "redis_unavailable")
    # An answer needs PostgreSQL above all: acknowledged (and then stored) or refused, in time.
    reply, timings["answer"] = await post_answer(cut, x.token, x_attempt, 1)
    if reply.status_code == 200:
        acked[x_attempt].append(1)
    else:
        assert_unavailable(reply, "redis_unavailable")
    assert max(timings.values()) < FAIL_WITHIN, timings

    # The other worker: sign-in, a ticket, a socket, answers — all as usual.
    on_direct = await chaos.login(direct, "student1")
    ticket_url = on_direct.ws_url(x_attempt, ticket=await on_direct.ticket(x_attempt))
    async with Socket.open(ticket_url) as ws:
        await greeted(ws)
        started = time.monotonic()
        reply = await ws.request("submit_answer", answer(3))
        assert reply["type"] == "answer_feedback", reply
        assert time.monotonic() - started < NORMAL_LATENCY
        acked[x_attempt].append(3)
    stop.set()
    latencies = await other
    assert latencies, "the other worker's candidate answered meanwhile"
    assert max(latencies) < NORMAL_LATENCY, latencies

    await assert_stored_as_acknowledged(chaos, acked)
    shown = {k: round(v, 2) for k, v in timings.items()}
    print(f"cut off from Redis: {shown}s; other worker max {max(latencies):.2f}s")


async def backends(chaos: Chaos, link: FaultProxy, state: str) -> int:
    """How many of the backends serving the proxy's links are in `state`."""
    ports = link.upstream_ports()
    if not ports:
        return 0
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND client_port IN :ports AND state = :state"
    ).bindparams(bindparam("ports", expanding=True))
    async with chaos.sessions() as s:
        return int(await s.scalar(query, {"ports": ports, "state": state}) or 0)


async def test_a_worker_cut_off_mid_transaction_does_not_lock_its_candidate_out_elsewhere(
    chaos: Chaos,
) -> None:
    """The DROP lands while the worker holds the attempt's row lock (its SELECT … FOR UPDATE
    answered, the answer lost on the way back). PostgreSQL never hears from that connection
    again; unless something makes it give up on it (an idle-in-transaction or TCP keepalive
    timeout), the lock stays for as long as the link is down, and the candidate cannot answer
    on any worker."""
    link, database_url = await chaos.database_proxy()
    cut, direct = await asyncio.gather(
        chaos.worker(EXAMSERVER_DATABASE_URL=database_url), chaos.worker()
    )
    exam = await chaos.exam(direct, 1)
    (x,), (aid,) = exam.candidates, exam.attempts

    async with chaos.sessions() as s, s.begin():
        # Hold the row, so the cut-off worker's transaction waits for it; cut while it waits.
        row = text("SELECT id FROM attempts WHERE id = :id FOR UPDATE")
        await s.execute(row, {"id": uuid.UUID(aid)})
        pending = chaos.background(post_answer(cut, x.token, aid, 1))

        async def waiting() -> bool:
            return await backends(chaos, link, "active") > 0 and await lock_waits(chaos) > 0

        await eventually(waiting, within=5, what="the worker's transaction waits for the row")
        link.blackhole()
    # Our commit let the worker's backend take the lock; the result is lost in the blackhole.
    await eventually(
        lambda: backends(chaos, link, "idle in transaction"),
        within=1.5,
        what="the cut-off connection holds the row",
    )
    reply, took = await pending
    assert error_code(reply) in UNAVAILABLE, reply.text
    assert took < FAIL_WITHIN, took

    started = time.monotonic()

    async def acknowledged_elsewhere() -> bool:
        reply, _ = await post_answer(direct, x.token, aid, 2)
        assert reply.status_code in (200, 503), reply.text
        return bool(reply.status_code == 200)

    await eventually(
        acknowledged_elsewhere,
        within=UNLOCKED_WITHIN,
        every=0.5,
        what="the candidate's answer on the other worker (the row is still locked by a "
        "connection PostgreSQL cannot hear from)",
    )
    print(f"mid-transaction cut: acknowledged elsewhere after {time.monotonic() - started:.1f}s")


async def lock_waits(chaos: Chaos) -> int:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    async with chaos.sessions() as s:
        return int(await s.scalar(query) or 0)


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_a_worker_cut_off_from_postgresql_five_times_never_acknowledges_what_it_lost(
    chaos: Chaos,
) -> None:
    """Candidates stream on both workers while one is cut off and restored, five times: the
    cut-off worker's candidates are refused meanwhile (never acknowledged), the other worker's
    never notice, and what was acknowledged anywhere is stored once."""
    link, database_url = await chaos.database_proxy()
    cut, direct = await asyncio.gather(
        chaos.worker(EXAMSERVER_DATABASE_URL=database_url), chaos.worker()
    )
    exam = await chaos.exam(direct, 6)
    stop = asyncio.Event()

    def only(worker: Worker) -> Callable[[], list[str]]:
        return lambda: [worker.base_url]

    streams = [  # three candidates on each worker
        StreamingCandidate(api.token, aid, only(cut if n < 3 else direct), rng=random.Random(n))
        for n, (api, aid) in enumerate(zip(exam.candidates, exam.attempts, strict=True))
    ]
    running = [chaos.background(s.run(stop)) for s in streams]
    cuts: list[tuple[datetime, datetime]] = []
    try:
        for _ in range(5):
            await asyncio.sleep(3.0)
            began = datetime.now(UTC)
            link.blackhole()
            await asyncio.sleep(5.0)
            cuts.append((began, datetime.now(UTC)))
            await link.restore()
        await asyncio.sleep(3.0)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*running), timeout=120)

    assert [p for s in streams for p in s.problems] == []
    rows = await chaos.stored(exam.attempts)
    stored = Counter((r["attempt_id"], r["client_seq"]) for r in rows)
    assert set(stored) == {(s.attempt_id, seq) for s in streams for seq in s.acks}
    assert max(stored.values()) == 1, "nothing stored twice"
    cut_off, unaffected = streams[:3], streams[3:]
    during = [
        (s.attempt_id, seq)
        for s in cut_off
        for seq, ack in s.acks.items()
        if not ack["duplicate"]
        and any(a < datetime.fromisoformat(ack["saved_at"]) < b for a, b in cuts)
    ]
    assert during == [], f"acknowledged by the cut-off worker: {during[:5]}"
    assert sum(sum(s.refusals.values()) for s in unaffected) == 0, "the other worker refused"
    print(
        f"5 cuts: {sum(len(s.acks) for s in streams)} acks, "
        f"{sum(s.refusals['database_unavailable'] for s in cut_off)} refusals on the cut worker"
    )
