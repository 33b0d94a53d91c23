"""An answer committed whose acknowledgement never reached the candidate (DESIGN.md §2 rule 2).

The worker commits, then the reply is lost: the link dropped it, or the worker was killed with
the reply still on its way. The candidate cannot know which; it sends the same answer with the
same client_seq to another worker and must get the very acknowledgement it missed (same
saved_at, `duplicate: true`), with one row stored. The lost replies are caught in the fault proxy
that held them, so the test compares the retry's ack with the one the server really sent.
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.chaos.conftest import Chaos, eventually, greeted, http_reply, socket_messages
from tests.chaos.proxy import FaultProxy
from tests.cluster.conftest import Worker
from tests.support import Api, Socket

pytestmark = pytest.mark.cluster


def held_reply(wire: bytearray) -> tuple[int, dict[str, Any]] | None:
    """The whole HTTP response the proxy held, once it is all there."""
    with contextlib.suppress(ValueError, IndexError):
        return http_reply(bytes(wire))
    return None


class LostAcks:
    """One candidate whose link to worker A runs through a fault proxy; worker B is direct."""

    def __init__(self, chaos: Chaos, a: Worker, b: Worker, student: Api, aid: str) -> None:
        self.chaos, self.a, self.b, self.aid = chaos, a, b, aid
        self.student = student
        self.on_b = chaos.on(b, student)
        self.front: FaultProxy

    async def start(self) -> None:
        self.front = await self.chaos.proxy(("127.0.0.1", self.a.port))

    async def committed(self, seq: int) -> bool:
        return any(r["client_seq"] == seq for r in await self.chaos.stored([self.aid]))

    async def over_rest(self, answer: dict[str, Any]) -> None:
        """The reply is held on the link until the answer is committed, then the link resets;
        the retry on B gets the reply the server had sent."""
        front = self.front
        front.withheld["to_client"].clear()
        front.hold("to_client")
        auth = {"Authorization": f"Bearer {self.student.token}"}
        async with httpx.AsyncClient(base_url=f"http://{front.url_host}", timeout=30) as http:
            request = self.chaos.background(
                http.post(f"/api/v1/attempts/{self.aid}/answers", json=answer, headers=auth)
            )
            seq = answer["client_seq"]
            await eventually(lambda: self.committed(seq), within=10, what="the answer commits")
            status, lost = await eventually(
                lambda: held_reply(front.withheld["to_client"]), within=5, what="a held reply"
            )
            front.cut()
            with pytest.raises(httpx.TransportError):
                await request
        await front.restore()
        assert status == 200, lost
        assert lost["duplicate"] is False, lost
        retry = await self.on_b.post(f"/attempts/{self.aid}/answers", answer)
        assert retry == lost | {"duplicate": True}

    async def over_the_socket_through_a_kill(self, answer: dict[str, Any]) -> None:
        """The worker commits, its acknowledgement is held on the link, the worker is killed;
        the retry on B's socket gets the acknowledgement the dead worker had sent."""
        front = self.front
        front.withheld["to_client"].clear()
        ticket = await self.student.ticket(self.aid)
        url = f"ws://{front.url_host}/api/v1/attempts/{self.aid}/ws?ticket={ticket}"
        async with Socket.open(url, compression=None) as ws:
            await greeted(ws)
            front.hold("to_client")
            sent = await ws.send("submit_answer", answer)
            seq = answer["client_seq"]
            await eventually(lambda: self.committed(seq), within=10, what="the answer commits")
            held = await eventually(
                lambda: [m for m in socket_messages(bytes(front.withheld["to_client"]))
                         if m.get("re") == sent] or None,
                within=5, what="the acknowledgement is on the wire",
            )  # fmt: skip
            self.a.kill()
            front.cut()
            with pytest.raises(ConnectionClosed):
                await ws.until("answer_feedback", timeout=10)
        await front.restore()
        (lost,) = held
        assert lost["type"] == "answer_feedback", lost
        assert lost["data"]["duplicate"] is False, lost
        async with Socket.open(
            self.on_b.ws_url(self.aid, ticket=await self.on_b.ticket(self.aid))
        ) as ws:
            await greeted(ws)
            again = await ws.request("submit_answer", answer)
        assert again["type"] == "answer_feedback", again
        assert again["data"] == lost["data"] | {"duplicate": True}


def answer(seq: int) -> dict[str, Any]:
    return {"item_id": f"q{seq % 4 + 1}", "response": ["ABCD"[seq % 4]], "client_seq": seq}


async def lose_acknowledgements(chaos: Chaos, rounds: int) -> None:
    a, b = await chaos.workers(2)
    exam = await chaos.exam(b, 1)
    case = LostAcks(chaos, a, b, exam.candidates[0], exam.attempts[0])
    await case.start()
    seq = 0
    for round_ in range(rounds):
        seq += 1
        await case.over_rest(answer(seq))
        seq += 1
        await case.over_the_socket_through_a_kill(answer(seq))
        if round_ < rounds - 1:
            case.a = await chaos.worker(port=a.port)  # behind the same proxy
    stored = await chaos.stored(exam.attempts)
    assert [(r["client_seq"], r["item"], r["response"]) for r in stored] == [
        (n, answer(n)["item_id"], answer(n)["response"]) for n in range(1, seq + 1)
    ], "each answer stored once"


async def test_an_answer_whose_acknowledgement_was_lost_is_acknowledged_the_same_on_retry(
    chaos: Chaos,
) -> None:
    await lose_acknowledgements(chaos, rounds=1)


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_ten_acknowledgements_lost_to_kills_are_each_given_again_on_retry(
    chaos: Chaos,
) -> None:
    await lose_acknowledgements(chaos, rounds=10)
