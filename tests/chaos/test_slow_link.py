"""A slow link near the deadline (DESIGN.md §3): the verdict depends on when the server
receives an answer, never on when the candidate sent it.

A fault proxy between the candidate and the worker delays everything the candidate sends. The
candidate sends a burst of answers spread around the moment that makes them *arrive* at
deadline + grace; all of them leave the candidate before the deadline by its own clock. Those
that reach the server before deadline + grace are accepted (saved no later than that), those
that reach it after are refused — `deadline_passed` first, then the attempt is over — and the
verdicts never go back from refused to accepted. The sweeper is slowed right down, so the
server's write-time rule alone decides.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.chaos.conftest import GRACE, Chaos, deadline_in, greeted, until_moment
from tests.support import Socket

pytestmark = pytest.mark.cluster

# Between the proxy handing an answer to the worker's socket and the worker reading the clock
# in its transaction; plenty on an idle machine, enough on a loaded one.
TOLERANCE = timedelta(seconds=0.25)
REFUSED = {"deadline_passed", "attempt_not_in_progress"}


async def verdicts_over_a_slow_link(chaos: Chaos, delays: list[float]) -> dict[str, int]:
    """One candidate per delay (each more than grace + 0.9 s, so every answer leaves before the
    deadline): answers arriving from 0.9 s before to 0.9 s after deadline + grace."""
    worker = await chaos.worker(EXAMSERVER_SWEEP_INTERVAL_SECONDS="60")
    exam = await chaos.exam(worker, len(delays))
    front = await chaos.proxy(("127.0.0.1", worker.port))
    counts = {"accepted": 0, "refused": 0}
    for n, delay in enumerate(delays):
        student, aid = exam.candidates[n], exam.attempts[n]
        url = f"ws://{front.url_host}/api/v1/attempts/{aid}/ws?ticket={await student.ticket(aid)}"
        async with Socket.open(url, compression=None) as ws:
            await greeted(ws)
            deadline = await deadline_in(chaos, exam.teacher, aid, delay + 2.0)
            due = deadline + timedelta(seconds=GRACE)
            front.slow(delay, "to_target")
            handed_on = len(front.delivered["to_target"])
            sent: dict[str, tuple[int, datetime]] = {}
            for k in range(13):  # arrivals from due - 0.9 s to due + 0.9 s
                await until_moment(due - timedelta(seconds=delay - 0.15 * k + 0.9))
                at = datetime.now(UTC)
                assert at < deadline, "each answer leaves the candidate before the deadline"
                msg_id = await ws.send(
                    "submit_answer",
                    {"item_id": f"q{k % 4 + 1}", "response": ["ABCD"[k % 4]], "client_seq": k + 1},
                )
                sent[msg_id] = (k + 1, at)
            replies: dict[str, dict[str, Any]] = {}
            while len(replies) < len(sent):
                message = await ws.receive(timeout=delay + 10)
                if message.get("re") in sent:
                    replies[message["re"]] = message
            front.slow(0.0, "to_target")
            # When the worker's socket got each answer (one frame each, 150 ms apart).
            arrivals = [at for at, _ in front.delivered["to_target"][handed_on:]]
            assert len(arrivals) == len(sent), "one chunk per answer"

        stored = {r["client_seq"]: r for r in await chaos.stored([aid])}
        verdicts = []
        for (msg_id, (seq, at)), arrival in zip(sent.items(), arrivals, strict=True):
            assert arrival - at >= timedelta(seconds=delay), "the link was slow"
            reply = replies[msg_id]
            accepted = reply["type"] == "answer_feedback"
            verdicts.append(accepted)
            if accepted:
                saved = datetime.fromisoformat(reply["data"]["saved_at"])
                assert saved <= due, f"seq {seq} saved at {saved}, after deadline + grace {due}"
                assert seq in stored
                assert arrival < due + TOLERANCE, (
                    f"seq {seq} arrived {arrival - due} late, accepted"
                )
            else:
                assert reply["type"] == "error", reply
                assert reply["data"]["code"] in REFUSED, reply
                assert seq not in stored
                assert arrival > due - TOLERANCE, (
                    f"seq {seq} arrived {due - arrival} early, refused"
                )
        assert verdicts == sorted(verdicts, reverse=True), f"accepted after a refusal: {verdicts}"
        assert 3 <= sum(verdicts) <= 10, verdicts  # both sides of the line were really tried
        first_refusal = next(replies[m] for m in sent if replies[m]["type"] == "error")
        assert first_refusal["data"]["code"] == "deadline_passed", first_refusal
        counts["accepted"] += sum(verdicts)
        counts["refused"] += len(verdicts) - sum(verdicts)
    return counts


async def test_over_a_slow_link_only_the_servers_receipt_time_decides(chaos: Chaos) -> None:
    figures = await verdicts_over_a_slow_link(chaos, delays=[1.5])
    print("slow link:", figures)


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_over_links_of_many_speeds_only_the_servers_receipt_time_decides(
    chaos: Chaos,
) -> None:
    figures = await verdicts_over_a_slow_link(chaos, delays=[1.5, 2.5, 4.0, 6.0, 9.0])
    print("slow links:", figures)
