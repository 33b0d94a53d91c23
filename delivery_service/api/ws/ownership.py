"""One live socket per user and scope (an attempt, a student's place in a session), across all
workers: the newest wins and the one it supersedes is told so and closed.

The handover is a Redis owner key (live/owners.py) plus a `superseded` event on the channel the
older socket listens to; because pub/sub may lose that event, every write and heartbeat checks
the key again (`ensure`).
"""

from __future__ import annotations

import logging
import uuid

from redis.exceptions import RedisError

from delivery_service.domain.errors import DomainError
from delivery_service.runtime import Runtime
from integrity import events as ev

log = logging.getLogger(__name__)


class SupersededError(DomainError):
    code = "superseded"


class Ownership:
    """The ownership of one connection (`connection_id`), for whichever user and scope it serves."""

    def __init__(self, runtime: Runtime, connection_id: str) -> None:
        self.rt = runtime
        self.id = connection_id

    async def take(self, user_id: uuid.UUID, scope: str, channel: str) -> str | None:
        """Become the one live connection; returns the superseded connection's id, if any."""
        previous: str | None = await self.rt.owners.take(scope, str(user_id), self.id)
        if previous is not None:
            await self.rt.bus.publish(channel, "superseded", {"connection_id": previous})
        return previous

    async def observe_superseded(
        self,
        previous: str | None,
        *,
        user_id: uuid.UUID,
        attempt_id: uuid.UUID | None,
        session_id: uuid.UUID | None = None,
    ) -> None:
        """The connection this one superseded (another tab or device), for the integrity
        ledger; its own opening is recorded with its admission (services/greeting.py)."""
        if previous is None:
            return
        await self.rt.evidence.observations.record(
            type_=ev.SUPERSEDED,
            candidate_id=user_id,
            attempt_id=attempt_id,
            session_id=session_id,
            payload={
                "connection_id": self.id,
                "worker": self.rt.worker_id,
                "superseded_connection_id": previous,
            },
        )

    async def ensure(self, user_id: uuid.UUID, scope: str) -> None:
        """Refresh presence; a socket that lost ownership (a missed pub/sub message) leaves now.

        Fails open: with Redis unreachable the write goes ahead, because saving a candidate's
        answer matters more than the two-tab guard, and the database keeps every write in order.
        """
        try:
            owned = await self.rt.owners.refresh(scope, str(user_id), self.id)
        except RedisError:
            self.rt.metrics.redis_errors.labels("ownership").inc()
            log.warning("ownership check skipped: Redis unavailable", exc_info=True)
            return
        if not owned:
            raise SupersededError("this connection was superseded by a newer one")

    async def release(self, user_id: uuid.UUID, scope: str) -> bool:
        return await self.rt.owners.release(scope, str(user_id), self.id)
