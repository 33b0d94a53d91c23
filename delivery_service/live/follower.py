"""One listener's place in one channel, kept across pub/sub outages (DESIGN.md §5).

Pub/sub is at most once: while a worker's pub/sub connection is down, events published meanwhile
never reach it. The bus then sends RESYNC. A follower answers it by replaying, from the channel's
Redis stream, everything after the last event it delivered, in order and once each (live events
that arrive during the replay wait behind it). Only when the stream cannot fill the gap (the epoch
changed because Redis lost its data, or the stream was trimmed past it) is RESYNC passed on, and
the listener falls back to a snapshot from the database.

A socket's greeting holds its followers too (`holding=True`): it subscribes, reads where each
channel stands, sends what the client missed and then the state from the database, and only then
`release`s them, so a live event never reaches the client before an older state that would
overwrite it. Held events at or before the position the greeting read are in that state already
and are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from delivery_service.live.bus import RESYNC, Event, Listener

log = logging.getLogger(__name__)


class Replayer(Protocol):
    async def replay(self, channel: str, epoch: str, offset: int) -> tuple[bool, list[Event]]: ...

    async def start_position(self, channel: str) -> tuple[str, int]: ...


class Follower:
    def __init__(
        self,
        bus: Replayer,
        channel: str,
        listener: Listener,
        spawn: Callable[[Awaitable[Any]], None],
        position: tuple[str, int] | None,
        on_recovery: Callable[[bool], None] | None = None,
        *,
        holding: bool = False,
    ) -> None:
        self._bus = bus
        self._channel = channel
        self._listener = listener
        self._spawn = spawn
        self._on_recovery = on_recovery
        self.position = position  # (epoch, offset) of the last event delivered, or the start
        self._held: list[Event] | None = None  # live events waiting behind a replay
        self._again = False  # another outage while replaying: replay once more after
        self._holding: list[Event] | None = [] if holding else None  # until `release`

    def release(self) -> None:
        """Deliver what arrived while holding (RESYNC included), and everything after it."""
        held, self._holding = self._holding or [], None
        for event in held:
            self(event)

    def __call__(self, event: Event) -> None:
        if self._holding is not None:
            self._holding.append(event)
            return
        if event.type == RESYNC:
            if self._held is None:
                self._held = []
                self._spawn(self._recover())
            else:
                self._again = True
            return
        if self._held is not None:
            self._held.append(event)
            return
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if self.position is not None:
            epoch, offset = self.position
            if event.epoch == epoch and event.offset <= offset:
                return  # delivered already (live, then again by the replay)
        self.position = (event.epoch, event.offset)
        self._listener(event)

    async def _recover(self) -> None:
        while True:
            self._again = False
            replayed = await self._replayed()
            fresh: tuple[str, int] | None = None
            if replayed is None:
                fresh = await self._fresh_position()
            if self._again:
                continue  # another outage while this one was repaired: its gap too
            break
        held, self._held = self._held or [], None
        if self._on_recovery is not None:
            self._on_recovery(replayed is not None)
        if replayed is not None:
            for event in [*replayed, *held]:
                self._deliver(event)
            return
        self.position = fresh
        self._listener(Event(self._channel, "", 0, RESYNC))
        for event in held:
            self._deliver(event)

    async def _replayed(self) -> list[Event] | None:
        """What the stream holds after our position, or None when it cannot say."""
        if self.position is None:
            return None
        try:
            ok, events = await self._bus.replay(self._channel, *self.position)
        except Exception:
            log.warning("replay of %s after a pub/sub outage failed", self._channel, exc_info=True)
            return None
        if not ok:
            log.info("stream of %s cannot replay after %s:%s; a snapshot follows",
                     self._channel, *self.position)  # fmt: skip
            return None
        return events

    async def _fresh_position(self) -> tuple[str, int] | None:
        """Where to follow from after a snapshot (the snapshot covers everything before)."""
        try:
            return await self._bus.start_position(self._channel)
        except Exception:
            return None
