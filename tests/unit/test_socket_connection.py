"""What a socket queues: the slow-socket rule (with a client that never reads), and one
encoding of a bus event for every socket that sends it."""

import asyncio
from types import SimpleNamespace
from typing import Any

from delivery_service.api.ws import messages as p
from delivery_service.api.ws.codes import CLOSE_OVERLOADED
from delivery_service.api.ws.lifecycle import LiveConnection
from delivery_service.metrics import Metrics
from delivery_service.settings import Settings


class StuckWebSocket:
    """A peer that stopped reading: every send waits forever."""

    def __init__(self) -> None:
        self.closed_with: int | None = None

    async def send_text(self, _: str) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int, reason: str = "") -> None:
        self.closed_with = code


def connection(queue_size: int) -> tuple[LiveConnection, StuckWebSocket]:
    settings = Settings(environment="test", jwt_secret="x" * 40, ws_send_queue_size=queue_size)
    ws = StuckWebSocket()
    runtime = SimpleNamespace(settings=settings, metrics=Metrics())
    return LiveConnection(ws, runtime), ws  # type: ignore[arg-type]


async def test_events_never_wait_for_a_slow_socket_and_overflow_closes_it() -> None:
    slow, _ = connection(queue_size=4)
    pushed: list[Any] = []
    for n in range(10):
        slow.push(p.Pong(data=p.PongData(server_now="2026-11-22T09:00:00Z")))  # type: ignore[arg-type]
        pushed.append(n)  # push returned at once: the bus was never held up
    assert len(pushed) == 10
    assert slow._closing is True
    queued = [slow._queue.get_nowait() for _ in range(slow._queue.qsize())]
    assert queued[-1][1] == CLOSE_OVERLOADED
    assert slow.rt.metrics.registry.get_sample_value("examserver_send_queue_drops_total") == 1


async def test_a_socket_within_its_queue_is_left_alone() -> None:
    fine, _ = connection(queue_size=16)
    for _ in range(10):
        fine.push(p.Pong(data=p.PongData(server_now="2026-11-22T09:00:00Z")))  # type: ignore[arg-type]
    assert fine._closing is False


async def test_an_event_is_encoded_once_for_all_the_sockets_that_send_it_alike() -> None:
    from delivery_service.live.bus import Event

    sockets = [connection(queue_size=16)[0] for _ in range(3)]
    event = Event("session:s1", "e1", 7, "notice", {"message": "Ten minutes left"})
    built: list[str] = []

    def build(kind: str) -> Any:
        def make() -> p.Pong:
            built.append(kind)
            return p.Pong(data=p.PongData(server_now=f"2026-11-22T09:00:0{len(built)}Z"))  # type: ignore[arg-type]

        return make

    for socket in sockets:
        socket.push_event(event, ("session", "event"), build("event"))
    sockets[0].push_event(event, ("session", "timer"), build("timer"))
    assert built == ["event", "timer"]  # once per sort of message, not once per socket
    texts = [s._queue.get_nowait() for s in sockets]
    assert texts[0] == texts[1] == texts[2]
    assert sockets[0]._queue.get_nowait() != texts[0]
    sample = sockets[0].rt.metrics.registry.get_sample_value  # each socket has its own here
    assert sample("examserver_ws_messages_out_total", {"type": "pong"}) == 2
