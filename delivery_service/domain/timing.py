"""Server-authoritative time rules, DESIGN.md §3.

One clock decides: callers pass the database's `now`. The deadline column is the truth; Redis keys
and the browser's countdown are derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class TimerView:
    """What every reply tells a client about time: enough to count down locally without drift."""

    deadline: datetime | None
    server_now: datetime
    remaining_ms: int
    running: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "deadline": iso(self.deadline) if self.deadline else None,
            "server_now": iso(self.server_now),
            "remaining_ms": self.remaining_ms,
            "running": self.running,
        }


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`, the one format on the wire."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def initial_deadline(
    started_at: datetime, time_limit_seconds: int, extra_seconds: int = 0
) -> datetime:
    return started_at + timedelta(seconds=time_limit_seconds + extra_seconds)


def accepts_writes(deadline: datetime, now: datetime, grace: timedelta) -> bool:
    """A response counts when the server receives it at or before deadline + grace, never later."""
    return now <= deadline + grace


def expiry_due_at(deadline: datetime, grace: timedelta) -> datetime:
    """The sweeper expires an attempt only once the grace window is over, so the write rule and
    the sweeper never disagree about an answer that arrived in time."""
    return deadline + grace


def deadline_after_resume(
    deadline: datetime, paused_at: datetime, resumed_at: datetime
) -> datetime:
    """Paused time does not count: the deadline moves by exactly the length of the pause."""
    return deadline + max(resumed_at - paused_at, timedelta(0))


def timer_view(
    *,
    state: str,
    deadline: datetime | None,
    paused_at: datetime | None,
    time_limit_seconds: int,
    now: datetime,
) -> TimerView:
    if state == "not_started" or deadline is None:
        return TimerView(None, now, time_limit_seconds * 1000, running=False)
    if state == "paused" and paused_at is not None:
        return TimerView(None, now, max(ms(deadline - paused_at), 0), running=False)
    if state == "in_progress":
        return TimerView(deadline, now, max(ms(deadline - now), 0), running=True)
    return TimerView(deadline, now, 0, running=False)
