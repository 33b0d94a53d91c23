"""The integrity evidence: candidate events into the ledger and the violation rules acted on,
the Safe Exam Browser gate, what the server observed, and what staff read of it all.

One `Evidence` per worker holds the parts; callers reach the one they need
(`evidence.events.record(...)`, `evidence.seb.require(...)`, `evidence.reports.report(...)`).
The pure rules stay in the top-level `integrity` package.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.live.bus import Bus
from delivery_service.services.attempts import AttemptService
from delivery_service.services.evidence.enforcement import Enforcement
from delivery_service.services.evidence.events import CandidateEvents, Recorded, Reported
from delivery_service.services.evidence.observations import Observations
from delivery_service.services.evidence.reports import StaffReports, verification_out
from delivery_service.services.evidence.seb import SebGate, seb_failure
from delivery_service.storage.ledger import Ledger

__all__ = [
    "CandidateEvents",
    "Evidence",
    "Observations",
    "Recorded",
    "Reported",
    "SebGate",
    "StaffReports",
    "seb_failure",
    "verification_out",
]


class Evidence:
    """The integrity use cases, by part. `db` makes the database sessions."""

    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        bus: Bus,
        attempts: AttemptService,
    ) -> None:
        self.observations = Observations(db=db, ledger=ledger)
        self.events = CandidateEvents(
            db=db,
            ledger=ledger,
            bus=bus,
            attempts=attempts,
            enforcement=Enforcement(ledger=ledger, bus=bus),
        )
        self.seb = SebGate(db=db, observations=self.observations)
        self.reports = StaffReports(db=db, ledger=ledger)
