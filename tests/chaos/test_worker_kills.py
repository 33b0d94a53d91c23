"""Workers killed with SIGKILL while candidates stream answers (DESIGN.md §2 rules 1 and 2).

A worker that dies takes its sockets and whatever it had not committed with it, and nothing
else: every answer it acknowledged is in PostgreSQL once, the candidate's resends (same
client_seq, on the other worker) store nothing twice, and each item ends up holding the answer
with the highest acknowledged client_seq. The short run kills three times; `-m long` twenty.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime

import pytest

from tests.chaos.candidates import StreamingCandidate
from tests.chaos.conftest import Chaos, eventually
from tests.cluster.conftest import Worker

pytestmark = pytest.mark.cluster


def same_moment(stored: datetime, acknowledged: str) -> bool:
    """The ack's saved_at (milliseconds on the wire) is the stored received_at."""
    return abs((stored - datetime.fromisoformat(acknowledged)).total_seconds()) < 0.001


async def stream_through_kills(chaos: Chaos, *, candidates: int, kills: int) -> dict[str, int]:
    workers = await chaos.workers(2)
    exam = await chaos.exam(workers[0], candidates)
    ports = [w.port for w in workers]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    stop = asyncio.Event()
    streams = [
        StreamingCandidate(api.token, attempt, lambda: urls, first=n % 2, rng=random.Random(n))
        for n, (api, attempt) in enumerate(zip(exam.candidates, exam.attempts, strict=True))
    ]
    running = [chaos.background(c.run(stop)) for c in streams]

    def acked() -> int:
        return sum(len(c.acks) for c in streams)

    async def streaming() -> None:
        """Answers are being acknowledged right now (five more per candidate)."""
        target = acked() + 5 * candidates
        await eventually(lambda: acked() >= target, within=30, what="candidates stream answers")

    live: dict[int, Worker] = dict(zip(ports, workers, strict=True))
    try:
        for kill in range(kills):
            await streaming()
            port = ports[kill % 2]
            live[port].kill()
            if kill < kills - 1:  # the other one is next: this one must be back by then
                live[port] = await chaos.worker(port=port)
        await streaming()
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*running), timeout=60)

    problems = [p for c in streams for p in c.problems]
    assert problems == [], problems[:10]
    rows = await chaos.stored(exam.attempts)
    stored = Counter((row["attempt_id"], row["client_seq"]) for row in rows)
    duplicated = [key for key, count in stored.items() if count > 1]
    assert duplicated == [], f"stored twice: {duplicated[:10]}"

    by_key = {(row["attempt_id"], row["client_seq"]): row for row in rows}
    lost, wrong = [], []
    for stream in streams:
        for seq, ack in stream.acks.items():
            row = by_key.get((stream.attempt_id, seq))
            answer = stream.sent[seq]
            if row is None:
                lost.append((stream.attempt_id, seq))
            elif (row["item"], row["response"]) != (
                answer.item,
                answer.response,
            ) or not same_moment(row["received_at"], ack["saved_at"]):
                wrong.append((row, ack))
        assert set(stream.sent) == set(stream.acks), "every answer sent was acknowledged"
    assert lost == [], f"acknowledged, not stored: {lost[:10]}"
    assert wrong == [], f"stored other than acknowledged: {wrong[:5]}"
    assert len(rows) == sum(len(s.acks) for s in streams), "stored what nobody sent"

    states = await chaos.item_states(exam.attempts)
    for stream in streams:
        latest: dict[str, int] = {}
        for seq in sorted(stream.acks):
            latest[stream.sent[seq].item] = seq
        for item, seq in latest.items():
            state = states[(stream.attempt_id, item)]
            assert (state["client_seq"], state["response"]) == (seq, stream.sent[seq].response), (
                f"{stream.attempt_id} {item}: holds {state}, the latest acknowledged is {seq}"
            )
    return {
        "acks": acked(),
        "duplicate_acks": sum(1 for s in streams for a in s.acks.values() if a["duplicate"]),
        "resent": sum(s.resent for s in streams),
        "reconnects": sum(s.connections for s in streams) - candidates,
    }


async def test_answers_acknowledged_around_three_kills_are_stored_once_with_the_latest_winning(
    chaos: Chaos,
) -> None:
    figures = await stream_through_kills(chaos, candidates=6, kills=3)
    assert figures["reconnects"] >= 6, figures  # every kill really cut candidates off
    print("worker kills (short):", figures)


@pytest.mark.long
@pytest.mark.timeout(600)
async def test_answers_acknowledged_around_twenty_kills_are_stored_once_with_the_latest_winning(
    chaos: Chaos,
) -> None:
    figures = await stream_through_kills(chaos, candidates=12, kills=20)
    assert figures["reconnects"] >= 20 * 6, figures
    print("worker kills (long):", figures)
