"""The worker's view of the database clock.

Decisions use the database's time inside their transaction (DESIGN.md §3). Between transactions a
worker still needs "now" (the sweeper's due check, `server_now` in ping replies), so it measures its
offset from the database periodically and applies it: workers whose own clocks drift still agree.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class ServerClock:
    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def calibrate(self, *, sent: float, received: float, database_now: datetime) -> None:
        """`sent`/`received` are time.time() around the query that read `database_now`."""
        midpoint = datetime.fromtimestamp((sent + received) / 2, UTC)
        self._offset = database_now - midpoint

    @staticmethod
    def wall() -> float:
        return time.time()
