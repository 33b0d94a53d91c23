"""Section time limits inside the test's limit: time is spent in a section while the candidate
is on one of its items and the attempt runs.

The clock is a small JSON object in the attempt's layout, per timed section:
`{"used_ms": spent before, "entered": ISO time the current visit began, or null}`. Entering
starts a visit, leaving (to another section, or a pause) adds it to `used_ms`. A section whose
time is spent accepts no more answers and no more visits; "next" from it goes to the next
section. The test's own deadline still ends everything, whatever a section has left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from delivery_service.domain.errors import Conflict
from delivery_service.domain.timing import iso

Clock = dict[str, dict[str, Any]]


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _spent(entry: Mapping[str, Any], now: datetime) -> timedelta:
    spent = timedelta(milliseconds=int(entry.get("used_ms", 0)))
    if entry.get("entered"):
        spent += max(now - _parse(entry["entered"]), timedelta(0))
    return spent


def remaining(
    clock: Mapping[str, Any], section: str, limit_seconds: int, now: datetime
) -> timedelta:
    """Time left in `section` (negative once it is over)."""
    return timedelta(seconds=limit_seconds) - _spent(clock.get(section, {}), now)


def deadline(
    clock: Mapping[str, Any], section: str, limit_seconds: int, now: datetime
) -> datetime | None:
    """When the section's time runs out, if the candidate is in it now."""
    if not clock.get(section, {}).get("entered"):
        return None
    return now + remaining(clock, section, limit_seconds, now)


def enter(clock: Mapping[str, Any], section: str, now: datetime) -> Clock:
    entry = dict(clock.get(section, {"used_ms": 0, "entered": None}))
    if not entry.get("entered"):
        entry["entered"] = iso(now)
    return {**clock, section: entry}


_enter = enter  # `clock_at` takes `enter` as a flag, as its callers always have


def leave(clock: Mapping[str, Any], section: str, now: datetime) -> Clock:
    entry = dict(clock.get(section, {"used_ms": 0, "entered": None}))
    if entry.get("entered"):
        entry["used_ms"] = int(_spent(entry, now) / timedelta(milliseconds=1))
        entry["entered"] = None
    return {**clock, section: entry}


def leave_all(clock: Mapping[str, Any], now: datetime) -> Clock:
    """A pause (or the end): no section's time runs."""
    out: Clock = dict(clock)
    for section in clock:
        out = leave(out, section, now)
    return out


def section_at(layout: Mapping[str, Any] | None, position: int) -> tuple[str, int | None, int]:
    """The section holding `position` in the form: (identifier, its time limit, the position
    where the next section starts)."""
    start = 0
    for section in (layout or {}).get("sections", []):
        end = start + len(section["items"])
        if start <= position < end:
            return section["identifier"], section.get("time_limit_seconds"), end
        start = end
    return "main", None, start


class LaidOut(Protocol):
    """The attempt's fields a section clock reads and writes (an `Attempt`)."""

    position: int
    layout: dict[str, Any] | None


@dataclass(frozen=True)
class SectionTimeLeft:
    """What the candidate is told about the current section's own time limit."""

    section: str
    limit_seconds: int
    remaining_ms: int
    deadline: datetime | None


def clock_of(layout: Mapping[str, Any] | None) -> Mapping[str, Any]:
    clock: Mapping[str, Any] = (layout or {}).get("clock", {})
    return clock


def left(layout: Mapping[str, Any] | None, section: str, limit: int, now: datetime) -> timedelta:
    """Time left in `section` of an attempt with this layout (negative once it is over)."""
    return remaining(clock_of(layout), section, limit, now)


def clock_at(attempt: LaidOut, now: datetime, *, enter: bool, position: int | None = None) -> None:
    """Start (or stop) the section clock of the section at `position` (default: the current
    one); nothing for sections without their own time limit."""
    where = attempt.position if position is None else position
    section, limit, _ = section_at(attempt.layout, where)
    if limit is None or attempt.layout is None:
        return
    visit = _enter if enter else leave
    attempt.layout = {
        **attempt.layout,
        "clock": visit(attempt.layout.get("clock", {}), section, now),
    }


def require_time(
    layout: Mapping[str, Any] | None, item: str, now: datetime, grace: timedelta
) -> None:
    """An answer to an item of a timed section counts only within its time (and the same
    network grace as the test's deadline)."""
    for section in (layout or {}).get("sections", []):
        limit = section.get("time_limit_seconds")
        if limit is not None and item in section["items"]:
            if left(layout, section["identifier"], limit, now) < -grace:
                raise Conflict(
                    "section_time_over",
                    f"the time for section {section['identifier']} is spent",
                    section=section["identifier"],
                )


def time_left(
    layout: Mapping[str, Any] | None, position: int, now: datetime, *, running: bool
) -> SectionTimeLeft | None:
    """The section at `position`'s own time, if it has a limit; its deadline only while the
    attempt runs (a paused clock has none)."""
    section, limit, _ = section_at(layout, position)
    if limit is None:
        return None
    clock = clock_of(layout)
    spare = remaining(clock, section, limit, now)
    return SectionTimeLeft(
        section=section,
        limit_seconds=limit,
        remaining_ms=max(int(spare / timedelta(milliseconds=1)), 0),
        deadline=deadline(clock, section, limit, now) if running else None,
    )
