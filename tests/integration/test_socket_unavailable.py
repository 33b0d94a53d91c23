"""A busy database or Redis while a socket is being admitted or greeted is retryable, as it is
inside the message loop: an `error` with the stable code and close 1013, never a server error
(before, the framework tried an HTTP reply on the WebSocket and the client saw close 1000)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from websockets.exceptions import ConnectionClosed

from tests.integration.conftest import World
from tests.integration.test_attempt_socket import greeted
from tests.support import Socket


def failing(error: Exception) -> Any:
    async def fail(*_: Any, **__: Any) -> Any:
        raise error

    return fail


@pytest.mark.parametrize(
    ("step", "error", "code"),
    [
        ("admit", PoolTimeout("QueuePool limit of size 10 overflow 10 reached"),
         "database_unavailable"),
        ("greeting", RedisConnectionError("Connection refused"), "redis_unavailable"),
    ],
)  # fmt: skip
async def test_a_busy_backend_while_a_socket_opens_tells_it_to_come_back(
    world: World, monkeypatch: pytest.MonkeyPatch, step: str, error: Exception, code: str
) -> None:
    aid = await world.started_attempt()
    runtime = world.served.runtime
    if step == "admit":
        monkeypatch.setattr(runtime.greeter, "admit_attempt", failing(error))
    else:
        monkeypatch.setattr(runtime.owners, "take", failing(error))
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        message = await ws.receive()
        assert message["type"] == "error"
        assert message["data"]["code"] == code
        with pytest.raises(ConnectionClosed):
            await ws.receive()
        assert ws.connection.close_code == 1013
    monkeypatch.undo()
    # Nothing was left half-open: the next connection is greeted as usual.
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await greeted(ws)


async def test_newcomers_wait_for_a_greeting_slot_then_are_told_to_come_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Load shedding: while every greeting slot is taken a newcomer waits a little, then gets
    `server_busy` and 1013; a slot coming free lets the next one in. The sockets already open
    are never touched."""
    aid = await world.started_attempt()
    sockets = world.served.runtime.sockets
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as open_:
        await greeted(open_)
        monkeypatch.setattr(sockets, "_greeting_wait", 0.2)
        taken = []
        while (release := await sockets.greeting()) is not None:
            taken.append(release)  # every slot, as a crowd of greetings would
        ticket = await world.student.ticket()
        async with Socket.open(world.student.ws_url(aid, ticket=ticket)) as late:
            message = await late.receive()
            assert message["data"]["code"] == "server_busy"
            with pytest.raises(ConnectionClosed):
                await late.receive()
            assert late.connection.close_code == 1013
        reply = await open_.request("heartbeat")
        assert reply["type"] == "pong"  # the open socket carried on meanwhile
        taken.pop()()
        taken[0]()  # releasing twice frees one slot, not two
        taken[0]()
        async with Socket.open(
            world.student.ws_url(aid, ticket=await world.student.ticket())
        ) as ws:
            await greeted(ws)
            # Its greeting is over, so its slot is free again: one for the next newcomer.
            assert (again := await sockets.greeting()) is not None
            again()
        for release in taken:
            release()
    metrics = world.served.runtime.metrics.registry.get_sample_value
    assert metrics("examserver_ws_refused_total", {"reason": "busy"}) == 1
