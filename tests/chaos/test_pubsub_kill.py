"""Pub/sub connections killed while a proctor extends, pauses, resumes and terminates
(DESIGN.md §5: pub/sub is at-most-once; the stream and the resync make up for it).

Right before each action, every worker's pub/sub connection is killed (`CLIENT KILL TYPE
pubsub`), so the event is published while the candidate's worker is not listening. Each
candidate's socket must still learn every change, each once and in the order they happened,
from the live event or from the channel's stream after the worker resubscribes. A private
redis-server: killing pub/sub clients on the shared one would hit everyone's.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from tests.chaos.conftest import Chaos, eventually, greeted, metric, redis_command
from tests.support import Api, Socket

pytestmark = pytest.mark.cluster

Change = tuple[str, str | None]  # (state, deadline) as the candidate is told


async def kill_pubsub(redis: Redis, workers: int) -> int:
    """Kill every pub/sub connection once all the workers' are there again."""

    async def subscribed() -> bool:
        clients = await redis_command(redis, "CLIENT", "LIST", "TYPE", "pubsub")
        return str(clients).count("id=") >= workers

    await eventually(subscribed, within=10, what="every worker resubscribed")
    return int(await redis_command(redis, "CLIENT", "KILL", "TYPE", "pubsub"))


async def act(teacher: Api, aid: str, action: str) -> Change:
    """One proctor action over REST; what the candidate must learn from it."""
    reason = {"reason": "fault test"}
    if action == "extend":
        timer = await teacher.post(f"/attempts/{aid}/extend", {"seconds": 60} | reason)
        return ("in_progress", timer["deadline"])
    if action == "terminate":
        await teacher.post(f"/attempts/{aid}/terminate", reason)
        return ("terminated", None)
    view = await teacher.post(f"/attempts/{aid}/{action}", reason)
    return (view["state"], view["timer"]["deadline"])


def learned(messages: list[dict[str, Any]]) -> list[Change]:
    """The changes a socket was sent as events (carrying `seq`), in the order it got them."""
    changes: list[Change] = []
    seqs = []
    for message in messages:
        if "seq" not in message or message["seq"] is None:
            continue  # greeting, replies
        seqs.append(message["seq"])
        if message["type"] == "timer":
            changes.append((message["data"]["state"], message["data"]["timer"]["deadline"]))
        elif message["type"] == "assessment_completed":
            changes.append((message["data"]["reason"], None))
    offsets = [int(str(seq).rsplit(":", 1)[1]) for seq in seqs]
    assert offsets == sorted(set(offsets)), f"events out of order or repeated: {seqs}"
    return changes


async def proctor_through_pubsub_kills(chaos: Chaos, rounds: int) -> dict[str, int]:
    redis = await chaos.private_redis()
    control = redis.client()
    a, b = await chaos.workers(2)
    exam = await chaos.exam(b, 2)
    # One candidate's socket on each worker; the proctor acts over REST on worker B.
    candidates = [chaos.on(w, api) for w, api in zip((a, b), exam.candidates, strict=True)]
    urls = [
        api.ws_url(aid, ticket=await api.ticket(aid))
        for api, aid in zip(candidates, exam.attempts, strict=True)
    ]
    actions = ["extend", "pause", "resume"] * rounds + ["extend", "terminate"]
    expected: dict[str, list[Change]] = {aid: [] for aid in exam.attempts}
    killed = 0
    try:
        async with Socket.open(urls[0]) as on_a, Socket.open(urls[1]) as on_b:
            for ws in (on_a, on_b):
                await greeted(ws)
            for action in actions:
                killed += await kill_pubsub(control, workers=2)
                for aid in exam.attempts:
                    expected[aid].append(await act(exam.teacher, aid, action))
            for ws in (on_a, on_b):
                await ws.until("assessment_completed", timeout=15)
            seen = {exam.attempts[0]: on_a.seen, exam.attempts[1]: on_b.seen}
    finally:
        await control.aclose()
    for aid in exam.attempts:
        assert learned(seen[aid]) == expected[aid]
    assert killed >= 2 * len(actions), killed
    # The kills really cost events: the sockets' followers replayed them from the streams
    # (none needed a snapshot: the streams were intact).
    replayed = snapshots = 0.0
    for worker in (a, b):
        replayed += await metric(worker, "examserver_resyncs_total", outcome="replayed")
        snapshots += await metric(worker, "examserver_resyncs_total", outcome="snapshot")
    assert replayed >= len(actions), f"only {replayed} replays for {len(actions)} kills"
    assert snapshots == 0, f"{snapshots} snapshots: a stream could not fill a gap"
    return {"actions": len(actions) * 2, "pubsub_kills": killed, "replays": int(replayed)}


async def test_a_candidate_learns_every_proctor_action_in_order_through_pubsub_kills(
    chaos: Chaos,
) -> None:
    figures = await proctor_through_pubsub_kills(chaos, rounds=1)
    print("pub/sub kills:", figures)


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_a_candidate_learns_forty_proctor_actions_in_order_through_pubsub_kills(
    chaos: Chaos,
) -> None:
    figures = await proctor_through_pubsub_kills(chaos, rounds=13)
    print("pub/sub kills (long):", figures)
