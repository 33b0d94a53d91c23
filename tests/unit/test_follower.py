"""A follower keeps its listener's place across pub/sub outages: replay from the stream, in
order, once each; a snapshot (RESYNC passed on) only when the stream cannot fill the gap."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from delivery_service.live.bus import RESYNC, Event
from delivery_service.live.follower import Follower

CHANNEL = "proctor:s1"


def ev(offset: int, epoch: str = "e1") -> Event:
    return Event(CHANNEL, epoch, offset, "answer_submitted", {"n": offset})


class FakeStream:
    """The channel's stream as the bus would replay it."""

    def __init__(self, events: list[Event], *, epoch: str = "e1") -> None:
        self.events = events
        self.epoch = epoch
        self.gate = asyncio.Event()
        self.gate.set()
        self.replays = 0

    async def replay(self, channel: str, epoch: str, offset: int) -> tuple[bool, list[Event]]:
        self.replays += 1
        await self.gate.wait()
        if epoch != self.epoch:
            return False, []
        return True, [e for e in self.events if e.offset > offset]

    async def start_position(self, channel: str) -> tuple[str, int]:
        return self.epoch, max((e.offset for e in self.events), default=0)


class Harness:
    def __init__(self, stream: FakeStream, position: tuple[str, int] | None) -> None:
        self.got: list[Event] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.outcomes: list[bool] = []
        self.follower = Follower(stream, CHANNEL, self.got.append, self.spawn, position,
                                 on_recovery=self.outcomes.append)  # fmt: skip

    def spawn(self, work: Awaitable[Any]) -> None:
        self.tasks.append(asyncio.ensure_future(work))

    async def settle(self) -> None:
        while any(not t.done() for t in self.tasks):
            await asyncio.gather(*self.tasks)

    def offsets(self) -> list[int]:
        return [e.offset for e in self.got if e.type != RESYNC]


async def test_events_missed_in_an_outage_are_replayed_in_order_once_each() -> None:
    stream = FakeStream([ev(n) for n in range(1, 7)])
    h = Harness(stream, ("e1", 0))
    h.follower(ev(1))
    h.follower(ev(2))
    # 3 and 4 are published while pub/sub is down; then the bus says RESYNC.
    stream.gate.clear()
    h.follower(Event(CHANNEL, "", 0, RESYNC))
    h.follower(ev(5))  # live again while the replay is still reading the stream
    stream.gate.set()
    await h.settle()
    h.follower(ev(6))
    h.follower(ev(6))  # a duplicate delivery is dropped
    assert h.offsets() == [1, 2, 3, 4, 5, 6]
    assert all(e.type != RESYNC for e in h.got)
    assert h.outcomes == [True]


async def test_a_changed_epoch_passes_resync_on_and_follows_the_new_stream() -> None:
    stream = FakeStream([ev(1, "e2"), ev(2, "e2")], epoch="e2")  # Redis lost its data
    h = Harness(stream, ("e1", 7))
    h.follower(Event(CHANNEL, "", 0, RESYNC))
    await h.settle()
    assert [e.type for e in h.got] == [RESYNC]
    assert h.follower.position == ("e2", 2)
    h.follower(ev(2, "e2"))  # covered by the snapshot
    h.follower(ev(3, "e2"))
    assert h.offsets() == [3]
    assert h.outcomes == [False]


async def test_a_second_outage_during_a_replay_is_repaired_too() -> None:
    stream = FakeStream([ev(1), ev(2)])
    h = Harness(stream, ("e1", 0))
    stream.gate.clear()
    h.follower(Event(CHANNEL, "", 0, RESYNC))
    await asyncio.sleep(0)
    stream.events.append(ev(3))  # published during the second outage
    h.follower(Event(CHANNEL, "", 0, RESYNC))
    stream.gate.set()
    await h.settle()
    assert h.offsets() == [1, 2, 3]
    assert stream.replays == 2


async def test_without_a_known_position_an_outage_falls_back_to_a_snapshot() -> None:
    h = Harness(FakeStream([ev(1)]), None)
    h.follower(Event(CHANNEL, "", 0, RESYNC))
    await h.settle()
    assert [e.type for e in h.got] == [RESYNC]
