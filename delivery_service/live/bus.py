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
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from delivery_service.backoff import Backoff
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


@dataclass(frozen=True)
class Reading:
    """Where a channel stands, and what a resuming client missed of it."""

    position: tuple[str, int]  # (epoch, offset): a subscriber resumes after this
    recovered: bool | None = None  # None: the client gave no position on this channel
    missed: list[Event] = field(default_factory=list)  # in order, after the client's position


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
        confirm_timeout: float = 5.0,
    ) -> None:
        self._metrics = metrics
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._maxlen = maxlen
        self._ttl = ttl_seconds
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        # Subscribe confirmations are read (they say Redis now delivers the channel to us).
        self._pubsub = redis.pubsub(ignore_subscribe_messages=False)
        self._prefix = keys.pubsub("")
        # SUBSCRIBEs sent and not yet confirmed, by pub/sub channel, and who waits for them.
        self._unconfirmed: dict[str, int] = {}
        self._confirming: dict[str, list[asyncio.Future[None]]] = defaultdict(list)
        self._confirm_timeout = confirm_timeout
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

    async def start_position(self, channel: str) -> tuple[str, int]:
        """The position a new subscriber resumes from, creating the channel's epoch if it has
        none yet, so that even a client that saw no event can ask for what it missed."""
        return (await self.read([channel]))[channel].position

    async def replay(self, channel: str, epoch: str, offset: int) -> tuple[bool, list[Event]]:
        """Events after (epoch, offset); recovered=False when they cannot all be produced (the
        epoch changed because Redis lost data, or the stream was trimmed past them)."""
        reading = (await self.read([channel], {channel: (epoch, offset)}))[channel]
        return bool(reading.recovered), reading.missed

    async def read(
        self, channels: Sequence[str], resume: Mapping[str, tuple[str, int]] | None = None
    ) -> dict[str, Reading]:
        """Where each channel stands and, for the channels in `resume`, the events after the
        client's (epoch, offset): one round trip for all of them (a greeting reads three)."""
        resume = resume or {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                offset_key, epoch_key, stream_key = self._keys.channel_keys(channel)
                pipe.set(epoch_key, secrets.token_hex(6), nx=True, ex=self._ttl)
                pipe.mget(epoch_key, offset_key)
                if channel in resume:
                    pipe.xrange(stream_key, min=f"{resume[channel][1] + 1}-0", max="+")
            replies = iter(await pipe.execute())
        readings: dict[str, Reading] = {}
        for channel in channels:
            next(replies)  # the SET NX
            epoch, offset = next(replies)
            position = ((str(epoch) if epoch is not None else ""), int(offset or 0))
            if channel not in resume:
                readings[channel] = Reading(position)
                continue
            entries = next(replies) or []
            missed = [self._from_stream(channel, position[0], str(i), f or {}) for i, f in entries]
            readings[channel] = self._resumed(position, resume[channel], missed)
        return readings

    @staticmethod
    def _resumed(
        position: tuple[str, int], client: tuple[str, int], missed: list[Event]
    ) -> Reading:
        (epoch, last), (client_epoch, client_offset) = position, client
        if client_epoch != epoch or client_offset > last:
            return Reading(position, recovered=False)  # Redis lost the channel: a snapshot
        if client_offset == last or (missed and missed[0].offset == client_offset + 1):
            # Events published between the pipeline's reads are kept: they are later still.
            end = max(last, missed[-1].offset) if missed else last
            return Reading((epoch, end), recovered=True, missed=missed)
        return Reading(position, recovered=False)  # trimmed past the client's position

    @asynccontextmanager
    async def subscribe(self, channel: str, listener: Listener) -> AsyncIterator[None]:
        """Deliver the channel's live events to `listener` (which must not block) while inside."""
        async with self.subscribe_all([(channel, listener)]):
            yield

    @asynccontextmanager
    async def subscribe_all(self, pairs: Sequence[tuple[str, Listener]]) -> AsyncIterator[None]:
        """Deliver each channel's live events to its listener while inside. Once inside, Redis
        has confirmed every subscription, so whatever is published from then on arrives: a
        reading of the channels taken after entering leaves no gap. (If no confirmation comes
        within `confirm_timeout`, the pub/sub connection is down; its recovery RESYNCs.)"""
        fresh = []
        for channel, listener in pairs:
            if not self._listeners[channel]:
                fresh.append(self._keys.pubsub(channel))
            self._listeners[channel].add(listener)
        try:
            waiting = self._await_confirmation(fresh, [self._keys.pubsub(c) for c, _ in pairs])
            if fresh:
                try:
                    await self._pubsub.subscribe(*fresh)
                except BaseException:
                    for name in fresh:  # not sent, so never confirmed: nobody waits for it
                        self._confirmed(name)
                    raise
            if waiting:
                _, late = await asyncio.wait(waiting, timeout=self._confirm_timeout)
                if late:
                    log.warning("Redis did not confirm %d subscriptions in time", len(late))
            yield
        finally:
            gone = []
            for channel, listener in pairs:
                self._listeners[channel].discard(listener)
                if not self._listeners[channel]:
                    del self._listeners[channel]
                    gone.append(self._keys.pubsub(channel))
            if gone:
                try:
                    await self._pubsub.unsubscribe(*gone)
                except Exception:  # the reconnect path resubscribes only live channels anyway
                    log.warning("unsubscribe from %s failed", gone, exc_info=True)

    def _await_confirmation(
        self, sending: list[str], wanted: list[str]
    ) -> list[asyncio.Future[None]]:
        """Futures for the confirmations `wanted` still lacks: the SUBSCRIBEs about to be sent,
        and any another socket sent for the same channel that Redis has not answered yet."""
        for name in sending:
            self._unconfirmed[name] = self._unconfirmed.get(name, 0) + 1
        loop = asyncio.get_running_loop()
        futures = []
        for name in dict.fromkeys(wanted):
            if self._unconfirmed.get(name):
                future: asyncio.Future[None] = loop.create_future()
                self._confirming[name].append(future)
                futures.append(future)
        return futures

    def _confirmed(self, name: str) -> None:
        left = self._unconfirmed.get(name, 0) - 1
        if left > 0:
            self._unconfirmed[name] = left
            return
        self._unconfirmed.pop(name, None)
        for future in self._confirming.pop(name, ()):
            if not future.done():
                future.set_result(None)

    def _confirm_all(self) -> None:
        """After a reconnect redis-py has subscribed to everything again: nobody waits longer."""
        for name in list(self._unconfirmed):
            self._unconfirmed[name] = 1
            self._confirmed(name)

    async def run(self) -> None:
        """The worker's one listener loop: dispatch, and on any Redis failure back off, let
        redis-py reconnect and resubscribe, then tell every listener to check its position."""
        await self._pubsub.subscribe(self._keys.pubsub(WORKERS_CHANNEL))
        backoff = Backoff(0.1, 5.0)
        lost = False
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                self.healthy = True
                backoff.succeeded()
                if lost:
                    lost = False
                    self._confirm_all()
                    self._resync_all()
                if message is None:
                    continue
                if message["type"] == "message":
                    self._dispatch(message["channel"], message["data"])
                elif message["type"] == "subscribe":
                    self._confirmed(message["channel"])
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = backoff.failed()
                log.warning("pub/sub connection failed; retrying in %.1fs", delay, exc_info=True)
                if self._metrics is not None:
                    self._metrics.redis_errors.labels("pubsub").inc()
                self.healthy = False
                lost = True
                await asyncio.sleep(delay)

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
