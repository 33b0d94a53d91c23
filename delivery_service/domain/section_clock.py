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
from datetime import datetime, timedelta
from typing import Any

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
