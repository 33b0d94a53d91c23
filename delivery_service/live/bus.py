"""Cross-worker fan-out (DESIGN.md §5).

One pub/sub connection per worker. Every event is appended to its channel's capped stream and
published by one Lua script, carrying the channel's epoch and an offset that grows by one per
event, so a reconnecting client can ask for exactly what it missed (`replay`). Pub/sub itself is
at-most-once: after any reconnect the bus tells its listeners to check their position (RESYNC).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from delivery_service.live.keys import WORKERS_CHANNEL, Keys
from delivery_service.live.scripts import Scripts
from delivery_service.metrics import Metrics

log = logging.getLogger(__name__)

RESYNC = "_resync"


@dataclass(frozen=True)
class Event:
    channel: str
    epoch: str
    offset: int
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    # What sockets send for this event, by the sort of message they make of it: the bus hands
    # one Event to every socket of the channel on this worker, so the first one encodes it and
    # the rest send the same text (LiveConnection.push_event).
    rendered: dict[Hashable, tuple[str, str]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def event_id(self) -> str:
        """What a client sends back as `last_event_id` to resume after this event."""
        return f"{self.epoch}:{self.offset}"


Listener = Callable[[Event], None]


def parse_event_id(value: str) -> tuple[str, int] | None:
    epoch, _, offset = value.partition(":")
    return (epoch, int(offset)) if epoch and offset.isdigit() else None


class Bus:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        scripts: Scripts,
        *,
        maxlen: int,
        ttl_seconds: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._maxlen = maxlen
        self._ttl = ttl_seconds
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._prefix = keys.pubsub("")
        self.healthy = False

    async def publish(self, channel: str, type_: str, data: dict[str, Any]) -> Event:
        offset_key, epoch_key, stream_key = self._keys.channel_keys(channel)
        # `ts` (publisher's wall clock, ms) measures fan-out latency; workers share NTP time.
        body = {"type": type_, "data": data, "ts": time.time() * 1000}
        payload = json.dumps(body, separators=(",", ":"))
        epoch, offset = await self._scripts.publish(
            keys=[offset_key, epoch_key, stream_key],
            args=[
                self._keys.pubsub(channel),
                payload,
                self._maxlen,
                self._ttl,
                secrets.token_hex(6),
            ],
        )
        return Event(channel, str(epoch), int(offset), type_, data)

    async def position(self, channel: str) -> tuple[str | None, int]:
        """The channel's current (epoch, offset): where a fresh subscriber starts."""
        offset_key, epoch_key, _ = self._keys.channel_keys(channel)
        epoch, offset = await self._redis.mget(epoch_key, offset_key)
        return (str(epoch) if epoch is not None else None), int(offset or 0)

    async def start_position(self, channel: str) -> tuple[str, int]:
        """The position a new subscriber resumes from, creating the channel's epoch if it has
        none yet, so that even a client that saw no event can ask for what it missed."""
        offset_key, epoch_key, _ = self._keys.channel_keys(channel)
        # One round trip: every greeting asks this for each of its channels, twice.
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(epoch_key, secrets.token_hex(6), nx=True, ex=self._ttl)
            pipe.mget(epoch_key, offset_key)
            _, (epoch, offset) = await pipe.execute()
        return (str(epoch) if epoch is not None else ""), int(offset or 0)

    async def replay(self, channel: str, epoch: str, offset: int) -> tuple[bool, list[Event]]:
        """Events after (epoch, offset); recovered=False when they cannot all be produced (the
        epoch changed because Redis lost data, or the stream was trimmed past them)."""
        current_epoch, last = await self.position(channel)
        if current_epoch != epoch or offset > last:
            return False, []
        if offset == last:
            return True, []
        _, _, stream_key = self._keys.channel_keys(channel)
        entries = await self._redis.xrange(stream_key, min=f"{offset + 1}-0", max="+") or []
        events = [
            self._from_stream(channel, epoch, str(entry_id), fields or {})
            for entry_id, fields in entries
        ]
        if not events or events[0].offset != offset + 1:
            return False, []
        return True, events

    @asynccontextmanager
    async def subscribe(self, channel: str, listener: Listener) -> AsyncIterator[None]:
        """Deliver the channel's live events to `listener` (which must not block) while inside."""
        first = not self._listeners[channel]
        self._listeners[channel].add(listener)
        try:
            if first:
                await self._pubsub.subscribe(self._keys.pubsub(channel))
            yield
        finally:
            self._listeners[channel].discard(listener)
            if not self._listeners[channel]:
                del self._listeners[channel]
                try:
                    await self._pubsub.unsubscribe(self._keys.pubsub(channel))
                except Exception:  # the reconnect path resubscribes only live channels anyway
                    log.warning("unsubscribe from %s failed", channel, exc_info=True)

    async def run(self) -> None:
        """The worker's one listener loop: dispatch, and on any Redis failure back off, let
        redis-py reconnect and resubscribe, then tell every listener to check its position."""
        await self._pubsub.subscribe(self._keys.pubsub(WORKERS_CHANNEL))
        backoff = 0.1
        lost = False
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
                self.healthy = True
                backoff = 0.1
                if lost:
                    lost = False
                    self._resync_all()
                if message is not None and message["type"] == "message":
                    self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("pub/sub connection failed; retrying in %.1fs", backoff, exc_info=True)
                if self._metrics is not None:
                    self._metrics.redis_errors.labels("pubsub").inc()
                self.healthy = False
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, raw_channel: str, data: str) -> None:
        channel = raw_channel.removeprefix(self._prefix)
        epoch, offset, payload = data.split("|", 2)
        body = json.loads(payload)
        if self._metrics is not None and isinstance(body.get("ts"), int | float):
            self._metrics.fanout.observe(max(time.time() - body["ts"] / 1000, 0.0))
        event = Event(channel, epoch, int(offset), body["type"], body.get("data", {}))
        self._deliver(channel, event)

    def _deliver(self, channel: str, event: Event) -> None:
        for listener in list(self._listeners.get(channel, ())):
            try:
                listener(event)
            except Exception:
                log.exception("listener on %s failed", channel)

    def _resync_all(self) -> None:
        for channel in list(self._listeners):
            self._deliver(channel, Event(channel, "", 0, RESYNC))

    @staticmethod
    def _from_stream(channel: str, epoch: str, entry_id: str, fields: dict[Any, Any]) -> Event:
        body = json.loads(fields["e"])
        offset = int(entry_id.split("-")[0])
        return Event(channel, epoch, offset, body["type"], body.get("data", {}))
