"""Pub/sub is at most once: after its connection dies, a worker resubscribes and its sockets
resynchronise (DESIGN.md §5). Real Redis only: the test kills the connection from the server."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from delivery_service.settings import Settings
from tests.integration.conftest import World
from tests.support import Socket


@pytest.fixture
def settings(real_settings: Settings) -> Settings:
    """Only the real Redis has connections to kill."""
    return real_settings


async def test_a_killed_pubsub_connection_is_replaced_and_sockets_resync(world: World) -> None:
    aid = await world.started_attempt()
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await ws.until("attempt_state")
        await ws.until("timer")
        admin = Redis.from_url(world.settings.redis_url)
        try:
            killed = await admin.client_kill_filter(_type="pubsub", skipme=True)
        finally:
            await admin.aclose()
        assert killed >= 1
        resync = await ws.until("attempt_state", timeout=15)
        assert resync["data"]["id"] == aid
        # Subscribed again: a live event still reaches the socket.
        await ws.until("timer")  # the resync's own timer
        extended = await world.teacher.post(
            f"/attempts/{aid}/extend", {"seconds": 60, "reason": "test"}
        )
        event = await ws.until("timer", timeout=10)
        assert event["seq"], "a live bus event, not another resync"
        assert event["data"]["timer"]["deadline"] == extended["deadline"]
