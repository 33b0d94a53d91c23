"""The expiry sweeper that runs on every worker (DESIGN.md §3).

Each pass claims due attempts from the deadline sorted set (a Lua lease, so one worker at a time
holds each) and expires them in the database, where the locked row makes the expiry happen once.
Redis is rebuilt, not trusted: when its epoch key is gone (it lost its data) or on a regular
interval, the sweeper re-creates timers from every running attempt in the database. The regular
rebuild runs on one worker per interval (a Redis key with the interval as its TTL): it repairs
the Redis all workers share, and it costs the worker that runs it real time on its loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import timedelta

from delivery_service.backoff import Backoff
from delivery_service.clock import ServerClock
from delivery_service.live.keys import SESSION_MEMBER
from delivery_service.live.timers import Timers
from delivery_service.metrics import Metrics
from delivery_service.services.attempts.expiry import AttemptExpiry
from delivery_service.services.sessions import SessionLifecycle

log = logging.getLogger(__name__)


MAX_BACKOFF_SECONDS = 1.0


class ExpirySweeper:
    def __init__(
        self,
        *,
        attempts: AttemptExpiry,
        group_sessions: SessionLifecycle,
        timers: Timers,
        clock: ServerClock,
        grace: timedelta,
        interval: float,
        lease: timedelta,
        reconcile_every: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._attempts = attempts
        self._group_sessions = group_sessions
        self._timers = timers
        self._clock = clock
        self._grace = grace
        self._interval = interval
        self._lease = lease
        self._reconcile_every = reconcile_every
        self._last_reconcile = 0.0
        self._holder = secrets.token_hex(6)
        self.healthy = False

    async def reconcile(self) -> int:
        running = await self._attempts.running_deadlines()
        restored = await self._timers.restore(running, self._clock.now())
        await self._timers.restore_due(
            (member, end + self._grace) for member, end in await self._group_sessions.running_ends()
        )
        self._last_reconcile = time.monotonic()
        if self._metrics is not None:
            self._metrics.timer_rebuilds.inc()
        return restored

    async def sweep_once(self) -> int:
        if await self._timers.mark_epoch(secrets.token_hex(6)):
            log.info("Redis holds no epoch (new or emptied): rebuilding timers from the database")
            await self.reconcile()
        elif time.monotonic() - self._last_reconcile > self._reconcile_every:
            # One worker per interval rebuilds for the whole cluster; the others only wait.
            if await self._timers.claim_reconcile(self._holder, self._reconcile_every):
                await self.reconcile()
            else:
                self._last_reconcile = time.monotonic()
        now = self._clock.now()
        expired = 0
        for member in await self._timers.claim_due(now, self._lease):
            if member.startswith(SESSION_MEMBER):
                await self._group_sessions.complete_due(member.removeprefix(SESSION_MEMBER))
            elif await self._attempts.expire_due(member):
                expired += 1
        return expired

    async def run(self) -> None:
        # Short cap: attempts fall due during an outage, and each waits out the backoff left
        # when Redis or the database comes back (10 s made expiries 3-10 s late).
        backoff = Backoff(self._interval, max(self._interval, MAX_BACKOFF_SECONDS))
        while True:
            try:
                await self.sweep_once()
                self.healthy = True
                backoff.succeeded()
                delay = self._interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.healthy = False
                delay = backoff.failed()
                log.warning("expiry sweep failed; retrying in %.1fs", delay, exc_info=True)
                if self._metrics is not None:
                    self._metrics.failure("sweeper", exc)
            await asyncio.sleep(delay)
