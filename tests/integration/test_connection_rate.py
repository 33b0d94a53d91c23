"""DESIGN §6: a worker admits new WebSockets at a bounded rate, so a reconnect storm cannot
starve the sockets already open; the ones turned away are told to come back (close 1013)."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from delivery_service.settings import Settings
from tests.integration.conftest import World
from tests.integration.test_attempt_socket import greeted
from tests.integration.test_observability import metric
from tests.support import Socket


@pytest.fixture
def server_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ws_accept_rate_per_second": 1.0, "ws_accept_burst": 2})


async def test_past_the_accept_rate_a_newcomer_is_told_to_come_back(world: World) -> None:
    aid = await world.started_attempt()
    urls = [world.student.ws_url(aid, ticket=await world.student.ticket()) for _ in range(3)]
    async with Socket.open(urls[0]) as first:
        await greeted(first)
        async with Socket.open(urls[1]) as second:
            await greeted(second)
            async with Socket.open(urls[2]) as third:
                with pytest.raises(ConnectionClosed):
                    await third.receive()
                assert third.connection.close_code == 1013
            # The open ones are untouched: the socket that superseded the first still works.
            pong = await second.request("heartbeat")
            assert pong["type"] == "pong"
    assert await metric(world, "examserver_ws_refused_total", reason="rate") == 1
    await asyncio.sleep(1.1)  # a token back: the next one is admitted
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await greeted(ws)
