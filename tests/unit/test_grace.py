"""The windows after a deadline: the network grace lets an answer in flight count, a `grace`
deadline policy adds a submission window in which answers are refused, and the attempt expires
only once both are over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from delivery_service.domain import attempts as rules
from delivery_service.domain.errors import DeadlinePassed
from delivery_service.domain.grace import expiry_grace, late_window
from test_assembly.model import Policies
from tests.unit.test_timing import Row

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
NETWORK = timedelta(seconds=2)
MS = timedelta(milliseconds=1)
GRACE_POLICY = Policies(deadline="grace", grace_seconds=30)


def running(deadline: datetime = T0) -> Row:
    return Row(state="in_progress", started_at=deadline - timedelta(minutes=10), deadline=deadline)


def test_auto_submit_tests_have_no_late_window_whatever_their_grace_seconds() -> None:
    assert late_window(Policies(deadline="auto_submit", grace_seconds=30)) == timedelta(0)


def test_a_grace_policy_opens_a_late_window_of_its_grace_seconds() -> None:
    assert late_window(GRACE_POLICY) == timedelta(seconds=30)


def test_expiry_waits_for_the_network_grace_plus_the_late_window() -> None:
    assert expiry_grace(NETWORK, GRACE_POLICY) == timedelta(seconds=32)
    assert expiry_grace(NETWORK, Policies()) == NETWORK


def test_answer_inside_the_network_grace_is_accepted() -> None:
    rules.require_writable(running(), now=T0 + NETWORK, grace=NETWORK)


def test_answer_in_the_late_window_is_refused_but_the_attempt_stays_open_for_submitting() -> None:
    attempt, now = running(), T0 + NETWORK + MS
    with pytest.raises(DeadlinePassed):
        rules.require_writable(attempt, now=now, grace=NETWORK)
    assert not rules.is_overdue(attempt, now=now, grace=expiry_grace(NETWORK, GRACE_POLICY))


def test_answer_after_the_late_window_is_refused_and_the_attempt_is_overdue() -> None:
    attempt, now = running(), T0 + timedelta(seconds=32) + MS
    with pytest.raises(DeadlinePassed):
        rules.require_writable(attempt, now=now, grace=NETWORK)
    assert rules.is_overdue(attempt, now=now, grace=expiry_grace(NETWORK, GRACE_POLICY))


def test_the_last_moment_of_the_late_window_is_not_yet_overdue() -> None:
    attempt, now = running(), T0 + timedelta(seconds=32)
    assert not rules.is_overdue(attempt, now=now, grace=expiry_grace(NETWORK, GRACE_POLICY))
