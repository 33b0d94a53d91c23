"""Proctored group sessions (source 002): life cycle, the global timer, joining, proctor actions
and the proctor's read model.

One `GroupSessions` per worker holds the four parts, each a small class over one shared
`SessionContext`; callers reach the part they need (`group_sessions.lifecycle.start(...)`).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.live.bus import Bus
from delivery_service.live.presence import Presence
from delivery_service.live.timers import Timers
from delivery_service.services.attempts import AttemptService
from delivery_service.services.sessions.context import SessionContext, Work
from delivery_service.services.sessions.joining import Attendance, Joined, Joining
from delivery_service.services.sessions.lifecycle import SessionLifecycle
from delivery_service.services.sessions.monitoring import Monitoring
from delivery_service.services.sessions.proctoring import Proctoring
from delivery_service.storage.ledger import Ledger

__all__ = [
    "Attendance",
    "GroupSessions",
    "Joined",
    "Joining",
    "Monitoring",
    "Proctoring",
    "SessionContext",
    "SessionLifecycle",
    "Work",
]


class GroupSessions:
    """The group-session use cases, by part. `db` makes the database sessions."""

    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        attempts: AttemptService,
        bus: Bus,
        timers: Timers,
        presence: Presence,
        grace: timedelta,
        ledger: Ledger,
        open_lead: timedelta = timedelta(minutes=30),
    ) -> None:
        self.context = SessionContext(
            db=db,
            attempts=attempts,
            bus=bus,
            timers=timers,
            presence=presence,
            grace=grace,
            ledger=ledger,
            open_lead=open_lead,
        )
        self.lifecycle = SessionLifecycle(self.context)
        self.attendance = Attendance(self.context)
        self.monitoring = Monitoring(self.context)
        self.proctoring = Proctoring(self.context, self.monitoring)

    async def run_after(self, work: Work) -> None:
        """What a committed decision left to do; for callers that joined a student inside
        their own transaction (`attendance.join_in`)."""
        await self.context.run_after(work)
