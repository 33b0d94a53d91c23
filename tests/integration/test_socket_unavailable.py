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
        monkeypatch.setattr(runtime.attempts, "get", failing(error))
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
