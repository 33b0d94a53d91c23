"""Section time limits: time runs only while the candidate is in the section and the attempt
runs; leaving and coming back resumes what was left."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from delivery_service.domain import section_clock as sc
from delivery_service.domain.errors import Conflict

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


LAYOUT: dict[str, Any] = {"sections": [
    {"identifier": "a", "items": ["q1", "q2"], "time_limit_seconds": 60},
    {"identifier": "b", "items": ["q3"], "time_limit_seconds": None},
]}  # fmt: skip
GRACE = timedelta(seconds=2)


@dataclass
class Held:
    position: int = 0
    layout: dict[str, Any] | None = field(default_factory=lambda: dict(LAYOUT))


def test_entering_a_timed_section_starts_its_clock_and_leaving_stops_it() -> None:
    attempt = Held()
    sc.clock_at(attempt, at(0), enter=True)
    assert sc.left(attempt.layout, "a", 60, at(15)) == timedelta(seconds=45)
    sc.clock_at(attempt, at(20), enter=False)
    assert sc.left(attempt.layout, "a", 60, at(500)) == timedelta(seconds=40)


def test_a_section_without_its_own_limit_keeps_no_clock() -> None:
    attempt = Held(position=2)
    sc.clock_at(attempt, at(0), enter=True)
    assert attempt.layout == LAYOUT


def test_an_attempt_without_a_layout_keeps_no_clock() -> None:
    attempt = Held(layout=None)
    sc.clock_at(attempt, at(0), enter=True)
    assert attempt.layout is None


def test_leaving_the_section_at_a_given_position_stops_that_sections_clock() -> None:
    attempt = Held()
    sc.clock_at(attempt, at(0), enter=True)
    attempt.position = 2  # moved on to section b
    sc.clock_at(attempt, at(10), enter=False, position=0)
    assert sc.left(attempt.layout, "a", 60, at(100)) == timedelta(seconds=50)


def test_an_untouched_section_has_its_whole_limit_left() -> None:
    assert sc.left(LAYOUT, "a", 60, at(0)) == timedelta(seconds=60)
    assert sc.left(None, "a", 60, at(0)) == timedelta(seconds=60)


def test_answer_within_the_sections_time_and_network_grace_is_accepted() -> None:
    attempt = Held()
    sc.clock_at(attempt, at(0), enter=True)
    sc.require_time(attempt.layout, "q1", at(62), GRACE)


def test_answer_after_the_sections_time_and_grace_is_refused() -> None:
    attempt = Held()
    sc.clock_at(attempt, at(0), enter=True)
    with pytest.raises(Conflict, match="section a is spent") as refused:
        sc.require_time(attempt.layout, "q2", at(62.001), GRACE)
    assert refused.value.code == "section_time_over"
    assert refused.value.details == {"section": "a"}


def test_answer_to_an_untimed_sections_item_is_never_refused_for_section_time() -> None:
    sc.require_time(LAYOUT, "q3", at(10_000), GRACE)


def test_time_left_in_a_running_section_counts_down_to_its_deadline() -> None:
    attempt = Held()
    sc.clock_at(attempt, at(0), enter=True)
    assert sc.time_left(attempt.layout, 1, at(15), running=True) == sc.SectionTimeLeft(
        section="a", limit_seconds=60, remaining_ms=45_000, deadline=at(60)
    )


def test_time_left_while_paused_has_no_deadline_and_never_goes_negative() -> None:
    attempt = Held()
    sc.clock_at(attempt, at(0), enter=True)
    assert sc.time_left(attempt.layout, 0, at(90), running=False) == sc.SectionTimeLeft(
        section="a", limit_seconds=60, remaining_ms=0, deadline=None
    )


def test_a_section_without_a_limit_has_no_time_left_to_tell() -> None:
    assert sc.time_left(LAYOUT, 2, at(0), running=True) is None
