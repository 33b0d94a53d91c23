"""The retry delays of the background loops (the expiry sweeper, the pub/sub listener)."""

from __future__ import annotations

import pytest

from delivery_service.backoff import Backoff


def test_each_failure_waits_twice_as_long_up_to_the_cap() -> None:
    backoff = Backoff(0.1, 1.0)
    assert [backoff.failed() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_success_starts_the_delays_over() -> None:
    backoff = Backoff(0.5, 5.0)
    backoff.failed()
    backoff.failed()
    backoff.succeeded()
    assert backoff.failed() == 0.5


def test_a_cap_below_the_first_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="first <= cap"):
        Backoff(2.0, 1.0)
