"""The bus channels one socket follows, from its greeting until it closes.

Each channel gets a Follower (live/follower.py) that replays from the stream what a pub/sub
outage lost. The greeting subscribes to all its channels at once and holds their live events
until it has sent the state they must come after (`follow_all`, then `release_held`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

from redis.exceptions import RedisError

from delivery_service.live.bus import Event, Listener, Reading
from delivery_service.live.follower import Follower
from delivery_service.runtime import Runtime


class Subscriptions:
    """Enter it while the socket is served: leaving unsubscribes from every channel."""

    def __init__(self, runtime: Runtime, spawn: Callable[[Awaitable[Any]], None]) -> None:
        self.rt = runtime
        self.spawn = spawn
        self._stack = contextlib.AsyncExitStack()
        self._subscribed: set[str] = set()
        self._held: list[Follower] = []  # the greeting's followers, until `release_held`

    async def __aenter__(self) -> Subscriptions:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, traceback)

    async def subscribe(self, channel: str, listener: Callable[[Event], None]) -> None:
        """Deliver a bus channel's events to `listener` until the socket closes."""
        if channel in self._subscribed:
            return
        self._subscribed.add(channel)
        # The position is read before subscribing, so a replay after an outage starts no later
        # than the first event this socket could have missed.
        try:
            position: tuple[str, int] | None = await self.rt.bus.start_position(channel)
        except RedisError:
            position = None  # an outage will then fall back to a snapshot
        follower = Follower(self.rt.bus, channel, listener, self.spawn, position,
                            on_recovery=self._count_recovery)  # fmt: skip
        await self._stack.enter_async_context(self.rt.bus.subscribe(channel, follower))

    async def follow_all(
        self, wanted: Mapping[str, Listener], resume: Mapping[str, tuple[str, int]]
    ) -> dict[str, Reading]:
        """The greeting's subscriptions: all channels subscribed in one command and confirmed,
        then where each stands and what a resuming client missed (`resume`: channel ->
        position) read in one round trip. Their live events wait until `release_held`, after
        the greeting has sent the missed events and the state from the database."""
        followers = {
            channel: Follower(self.rt.bus, channel, listener, self.spawn, None,
                              on_recovery=self._count_recovery, holding=True)
            for channel, listener in wanted.items()
            if channel not in self._subscribed
        }  # fmt: skip
        self._subscribed.update(followers)
        self._held += followers.values()
        pairs = list(followers.items())
        await self._stack.enter_async_context(self.rt.bus.subscribe_all(pairs))
        readings = await self.rt.bus.read(
            list(followers), {c: p for c, p in resume.items() if c in followers}
        )
        for channel, reading in readings.items():
            # Held events up to here are in the state the greeting sends (or were missed and
            # are sent before it): only later ones are delivered.
            followers[channel].position = reading.position
        return readings

    def release_held(self) -> None:
        held, self._held = self._held, []
        for follower in held:
            follower.release()

    def _count_recovery(self, replayed: bool) -> None:
        self.rt.metrics.resyncs.labels("replayed" if replayed else "snapshot").inc()
