"""Section time limits: time runs only while the candidate is in the section and the attempt
runs; leaving and coming back resumes what was left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from delivery_service.domain import section_clock as sc

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_time_runs_only_during_visits() -> None:
    clock = sc.enter({}, "s1", at(0))
    assert sc.remaining(clock, "s1", 60, at(10)) == timedelta(seconds=50)
    assert sc.deadline(clock, "s1", 60, at(10)) == at(60)
    clock = sc.leave(clock, "s1", at(20))  # 20 s spent
    assert sc.deadline(clock, "s1", 60, at(500)) is None
    assert sc.remaining(clock, "s1", 60, at(500)) == timedelta(seconds=40)
    clock = sc.enter(clock, "s1", at(600))
    assert sc.deadline(clock, "s1", 60, at(601)) == at(640)
    assert sc.remaining(clock, "s1", 60, at(650)) == timedelta(seconds=-10)


def test_entering_twice_keeps_the_first_visit_and_leaving_all_stops_every_clock() -> None:
    clock = sc.enter({}, "s1", at(0))
    clock = sc.enter(clock, "s1", at(30))  # a reconnect re-enters: no time is given back
    assert sc.remaining(clock, "s1", 60, at(40)) == timedelta(seconds=20)
    clock = sc.enter(clock, "s2", at(40))
    clock = sc.leave_all(clock, at(45))  # a pause
    assert clock == {"s1": {"used_ms": 45_000, "entered": None},
                     "s2": {"used_ms": 5_000, "entered": None}}  # fmt: skip


def test_the_section_at_a_position() -> None:
    layout = {"sections": [
        {"identifier": "a", "items": ["q1", "q2"], "time_limit_seconds": 60},
        {"identifier": "b", "items": ["q3"], "time_limit_seconds": None},
    ]}  # fmt: skip
    assert sc.section_at(layout, 0) == ("a", 60, 2)
    assert sc.section_at(layout, 1) == ("a", 60, 2)
    assert sc.section_at(layout, 2) == ("b", None, 3)
    assert sc.section_at(None, 0) == ("main", None, 0)
