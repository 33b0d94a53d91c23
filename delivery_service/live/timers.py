"""Attempt timers in Redis: a TTL key per attempt and one deadline sorted set for the sweepers.

Both are copies of the database's deadline (DESIGN.md §3). The TTL key answers "when is the
deadline" without a database read (ping replies); the sorted set, scored by deadline + grace, tells
every worker's sweeper what is due. Keyspace notifications are deliberately not used.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from redis.asyncio import Redis

from delivery_service.live.keys import Keys
from delivery_service.live.scripts import Scripts

ZERO = timedelta(0)
RESTORE_BATCH = 500  # attempts per pipeline when rebuilding timers


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class Timers:
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts, grace: timedelta) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._grace = grace

    async def schedule(
        self, attempt_id: str, deadline: datetime, now: datetime, *, late: timedelta = ZERO
    ) -> None:
        """Set (or move) an attempt's timer to the database's deadline; `late` is a test's
        submission window after it, which the sweeper waits out too."""
        async with self._redis.pipeline(transaction=True) as pipe:
            if deadline > now:
                pipe.set(self._keys.timer(attempt_id), epoch_ms(deadline), pxat=epoch_ms(deadline))
            else:
                pipe.delete(self._keys.timer(attempt_id))
            pipe.zadd(self._keys.deadlines, {attempt_id: epoch_ms(deadline + self._grace + late)})
            await pipe.execute()

    async def schedule_due(self, member: str, due: datetime) -> None:
        """Wake a sweeper at `due` for something other than an attempt (a session's end)."""
        await self._redis.zadd(self._keys.deadlines, {member: epoch_ms(due)})

    async def restore_due(self, due: Iterable[tuple[str, datetime]]) -> None:
        entries = {member: epoch_ms(at) for member, at in due}
        if entries:
            await self._redis.zadd(self._keys.deadlines, entries, nx=True)

    async def cancel(self, attempt_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._keys.deadlines, attempt_id)
            pipe.delete(self._keys.timer(attempt_id))
            await pipe.execute()

    async def deadline_ms(self, attempt_id: str) -> int | None:
        value = await self._redis.get(self._keys.timer(attempt_id))
        return int(value) if value is not None else None

    async def claim_due(self, now: datetime, lease: timedelta, batch: int = 200) -> list[str]:
        claimed = await self._scripts.claim_due(
            keys=[self._keys.deadlines],
            args=[epoch_ms(now), int(lease.total_seconds() * 1000), batch],
        )
        return [str(member) for member in claimed]

    async def restore(
        self, running: Iterable[tuple[str, datetime, timedelta]], now: datetime
    ) -> int:
        """Re-create missing entries from the database without disturbing live leases.

        In pipelines of RESTORE_BATCH attempts: building and parsing one pipeline of every
        running attempt (28,000 commands for 14,000) held the worker's loop for 0.6 s; between
        batches the loop serves sockets."""
        count = 0
        batch: list[tuple[str, datetime, timedelta]] = []
        for entry in running:
            batch.append(entry)
            if len(batch) == RESTORE_BATCH:
                count += await self._restore(batch, now)
                batch = []
        if batch:
            count += await self._restore(batch, now)
        return count

    async def _restore(self, batch: list[tuple[str, datetime, timedelta]], now: datetime) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            for attempt_id, deadline, late in batch:
                if deadline > now:
                    pipe.set(
                        self._keys.timer(attempt_id),
                        epoch_ms(deadline),
                        pxat=epoch_ms(deadline),
                        nx=True,
                    )
                pipe.zadd(
                    self._keys.deadlines,
                    {attempt_id: epoch_ms(deadline + self._grace + late)},
                    nx=True,
                )
            await pipe.execute()
        return len(batch)

    async def claim_reconcile(self, holder: str, every: float) -> bool:
        """True for one caller per `every` seconds across the cluster: one worker's reconcile
        repairs the Redis every worker shares, so N workers need not each run it."""
        key = self._keys.reconcile
        return bool(await self._redis.set(key, holder, nx=True, px=int(every * 1000)))

    async def mark_epoch(self, epoch: str) -> bool:
        """True when Redis had no epoch (new, or lost its data): rebuild from the database."""
        return bool(await self._redis.set(self._keys.epoch, epoch, nx=True))
