"""PostgreSQL stops and starts again under a running worker (issue 17, finding 4).

"Stopped" is what a worker sees when PostgreSQL shuts down: each of its connections is told
"terminating connection due to administrator command" and dropped, and new connections are
refused. Meanwhile every request that needs the database must answer a clear, retryable 503
(`database_unavailable`, with Retry-After), the socket an `error` with that code — never a bare
500, a hang or `internal_error` — and nothing may be acknowledged. Once PostgreSQL is back the
same worker process (no restart) accepts answers again within seconds, and everything it
acknowledged before is there.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from websockets.exceptions import ConnectionClosed

from tests.chaos.candidates import StreamingCandidate
from tests.chaos.conftest import (
    Chaos,
    assert_alive,
    assert_ready_says,
    assert_unavailable,
    eventually,
    greeted,
    probe,
)
from tests.chaos.proxy import FaultProxy
from tests.support import PASSWORD, Socket

pytestmark = pytest.mark.cluster

RECOVER_WITHIN = 10.0  # answers are acknowledged again this soon after PostgreSQL is back


async def stop_postgres(chaos: Chaos, link: FaultProxy) -> None:
    """As the worker sees a PostgreSQL shutdown: its backends terminated, new connections
    refused (the machine's PostgreSQL itself keeps running for everyone else)."""
    link.stop_accepting()
    await chaos.terminate_backends(link)
    await link.refuse()


async def test_while_postgresql_is_down_requests_get_503_and_nothing_is_acknowledged(
    chaos: Chaos,
) -> None:
    link, database_url = await chaos.database_proxy()
    worker = await chaos.worker(EXAMSERVER_DATABASE_URL=database_url)
    pid = worker.process.pid
    exam = await chaos.exam(worker, 1)
    student, aid = exam.candidates[0], exam.attempts[0]
    token = student.token
    acked: dict[int, dict[str, object]] = {}

    def answer(seq: int) -> dict[str, object]:
        return {"item_id": f"q{seq % 4 + 1}", "response": ["ABCD"[seq % 4]], "client_seq": seq}

    async with Socket.open(student.ws_url(aid, ticket=await student.ticket(aid))) as ws:
        await greeted(ws)
        for seq in (1, 2, 3):
            reply = await ws.request("submit_answer", answer(seq))
            assert reply["type"] == "answer_feedback", reply
            acked[seq] = reply["data"]

        await stop_postgres(chaos, link)
        down_since = time.monotonic()

        await assert_ready_says(worker, 503)
        await assert_alive(worker)

        refused = []
        seq = 4
        while time.monotonic() - down_since < 4.0:  # spread over the outage, not one instant
            rest, _ = await probe(
                worker, "POST", f"/api/v1/attempts/{aid}/answers", answer(seq), token
            )
            assert_unavailable(rest, "database_unavailable")
            over_socket = await ws.request("submit_answer", answer(seq + 1))
            assert over_socket["type"] == "error", over_socket
            assert over_socket["data"]["code"] == "database_unavailable", over_socket
            refused += [seq, seq + 1]
            seq += 2
            await asyncio.sleep(0.2)

        login, _ = await probe(
            worker, "POST", "/api/v1/auth/login", {"username": "student2", "password": PASSWORD}
        )
        assert_unavailable(login, "database_unavailable")
        read, _ = await probe(worker, "GET", f"/api/v1/attempts/{aid}", token=token)
        assert_unavailable(read, "database_unavailable")
        listing, _ = await probe(worker, "GET", "/api/v1/tests", token=token)
        assert_unavailable(listing, "database_unavailable")
        # A socket opening now is told to come back (1013), not failed: whether the ticket
        # is refused already (if issuing one reads the database) or the socket's admission.
        ticket, _ = await probe(worker, "POST", "/api/v1/ws-tickets", {}, token)
        if ticket.status_code != 201:
            assert_unavailable(ticket, "database_unavailable")
        else:
            opening = student.ws_url(aid, ticket=ticket.json()["ticket"])
            async with Socket.open(opening) as newcomer:
                message = await newcomer.receive()
                assert message["type"] == "error", message
                assert message["data"]["code"] == "database_unavailable", message
                with pytest.raises(ConnectionClosed):
                    await newcomer.receive()
                assert newcomer.connection.close_code == 1013

        await link.restore()
        back_at = time.monotonic()

        async def accepted_again() -> dict[str, object] | None:
            reply = await ws.request("submit_answer", answer(refused[0]))
            return reply if reply["type"] == "answer_feedback" else None

        again = await eventually(accepted_again, within=RECOVER_WITHIN, every=0.2)
        acked[refused[0]] = again["data"]
        recovered_in = time.monotonic() - back_at
    rest, _ = await probe(worker, "POST", f"/api/v1/attempts/{aid}/answers", answer(seq), token)
    assert rest.status_code == 200, rest.text
    acked[seq] = rest.json()
    assert worker.process.poll() is None, "the worker died"
    assert worker.process.pid == pid, "no restart"

    stored = await chaos.stored([aid])
    assert sorted(r["client_seq"] for r in stored) == sorted(acked), (
        "stored exactly what was acknowledged: nothing lost, nothing refused kept"
    )
    print(f"database outage: {len(refused)} refused, recovered in {recovered_in:.1f}s")


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_postgresql_stopping_and_starting_five_times_loses_and_duplicates_nothing(
    chaos: Chaos,
) -> None:
    link, database_url = await chaos.database_proxy()
    worker = await chaos.worker(EXAMSERVER_DATABASE_URL=database_url)
    exam = await chaos.exam(worker, 4)
    stop = asyncio.Event()
    streams = [
        StreamingCandidate(api.token, aid, lambda: [worker.base_url], rng=random.Random(n))
        for n, (api, aid) in enumerate(zip(exam.candidates, exam.attempts, strict=True))
    ]
    running = [chaos.background(s.run(stop)) for s in streams]
    outages: list[tuple[datetime, datetime]] = []
    try:
        for _ in range(5):
            await asyncio.sleep(3.0)  # up: answers flow
            began = datetime.now(UTC)
            await stop_postgres(chaos, link)
            await asyncio.sleep(4.0)  # down
            outages.append((began, datetime.now(UTC)))
            await link.restore()
        await asyncio.sleep(3.0)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*running), timeout=60)

    assert [p for s in streams for p in s.problems] == []
    rows = await chaos.stored(exam.attempts)
    stored = Counter((r["attempt_id"], r["client_seq"]) for r in rows)
    acknowledged = {(s.attempt_id, seq) for s in streams for seq in s.acks}
    assert set(stored) == acknowledged, "stored exactly what was acknowledged"
    assert max(stored.values()) == 1, "nothing stored twice"
    during = [
        (s.attempt_id, seq)
        for s in streams
        for seq, ack in s.acks.items()
        if any(began < datetime.fromisoformat(ack["saved_at"]) < ended for began, ended in outages)
        and not ack["duplicate"]
    ]
    assert during == [], f"acknowledged while PostgreSQL was down: {during[:5]}"
    refusals = sum(s.refusals["database_unavailable"] for s in streams)
    assert refusals > 0
    print(f"5 outages: {len(acknowledged)} acks, {refusals} refusals, 0 lost, 0 dup")
