"""The load harness's scenarios in small (tens of candidates, seconds), over the real protocol
through nginx and three real workers: correctness only — nothing lost, duplicated or missing,
every resync complete, each expiry exactly once. Speed is bench/'s business, not a test's."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench import load, peak
from tests.cluster.test_rolling_restart import nginx  # noqa: F401  (the fixture)

pytestmark = pytest.mark.cluster


def scenario(name: str, **options: Any) -> argparse.Namespace:
    values = {"scenario": name, "candidates": 30, "proctors": 3, "workers": 3, "interval": 1.0,
              "duration": 8.0, "warmup": 4.0, "attempts": 30, "lead": 4.0, "blip": "none",
              "connect_rate": 400.0, "argv": []}  # fmt: skip
    return argparse.Namespace(**(values | options))


@pytest.fixture
def databases(pg_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMSERVER_DATABASE_URL", pg_url)
    monkeypatch.setenv("EXAMSERVER_REDIS_URL", redis_url)


@pytest.mark.usefixtures("databases", "nginx")
@pytest.mark.timeout(240)
async def test_steady_with_a_pubsub_kill_loses_nothing_anyone_sees() -> None:
    result = await load.main(scenario("steady", blip="kill-pubsub"))
    assert result["blip"]["killed"] >= 3  # every worker's pub/sub connection
    assert result["answers_sent"] > 100
    assert result["answers_acked"] == result["answers_sent"]
    assert result["database"] == {"lost": 0, "duplicated": 0, "missing_acks": 0}
    # The proctors saw every acknowledged answer as an event, replayed where pub/sub dropped it.
    assert result["proctor_missed_events"] == 0
    assert result["proctor_snapshots"] == 0


@pytest.mark.usefixtures("databases", "nginx")
@pytest.mark.timeout(240)
async def test_a_rising_answer_rate_loses_nothing_at_any_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The peak ramp, small: three steps, each doubling the rate under running candidates (the
    limit set out of reach, so every step runs); every answer acknowledged and stored once."""
    monkeypatch.setitem(load.SCENARIOS, "peak", peak.peak)
    result = await load.main(
        scenario("peak", start=10.0, factor=2.0, step=3.0, max_steps=3, limit_ms=60_000.0)
    )
    assert [s["offered_per_s"] for s in result["steps"]] == [10.0, 20.0, 40.0]
    assert all(s["acked_per_s"] > 0 for s in result["steps"])
    assert result["answers_acked"] == result["answers_sent"]
    assert result["database"] == {"lost": 0, "duplicated": 0, "missing_acks": 0}


@pytest.mark.usefixtures("databases", "nginx")
@pytest.mark.timeout(240)
async def test_a_reconnect_storm_resyncs_everyone_from_the_streams() -> None:
    result = await load.main(scenario("storm"))
    assert result["storm"]["recovered_from_streams"] == 30
    assert result["answers_acked"] == result["answers_sent"]
    assert result["database"] == {"lost": 0, "duplicated": 0, "missing_acks": 0}


@pytest.mark.usefixtures("databases", "nginx")
@pytest.mark.timeout(240)
async def test_attempts_due_in_the_same_second_expire_exactly_once() -> None:
    result = await load.main(scenario("expiry"))
    assert result["expired"] == 30
    assert (result["expired_once"], result["expired_twice_or_more"]) == (30, 0)
    assert result["lag_until_all_expired_s"] < 60
