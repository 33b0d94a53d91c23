"""Violation rules over a candidate's event history: incidents, counted tab switches, actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from integrity import seb
from integrity.policy import LockdownPolicy
from integrity.rules import Observed, assess, new_violations

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


class History:
    """Builds events a few seconds apart, the way a browser reports them."""

    def __init__(self) -> None:
        self.events: list[Observed] = []
        self.at = T0

    def add(self, kind: str, *, after: float = 0.2, duration_ms: int | None = None) -> int:
        self.at += timedelta(seconds=after)
        ident = len(self.events) + 1
        self.events.append(Observed(ident, kind, self.at, duration_ms))
        return ident

    def tab_switch(self, away_ms: int, *, after: float = 60) -> None:
        self.add("window_blur", after=after)
        self.add("tab_hidden")
        self.add("tab_visible", after=away_ms / 1000, duration_ms=away_ms)
        self.add("tab_violation", duration_ms=away_ms)
        self.add("window_focus", duration_ms=away_ms)


def test_one_tab_switch_is_one_incident_however_many_signals_it_makes() -> None:
    h = History()
    h.tab_switch(4000)
    result = assess(LockdownPolicy(), h.events)
    assert len(result.incidents) == 1
    incident = result.incidents[0]
    assert incident.kinds == {
        "window_blur": 1, "tab_hidden": 1, "tab_visible": 1, "tab_violation": 1, "window_focus": 1,
    }  # fmt: skip
    assert (result.tab_switches, incident.longest_absence_ms, result.violations) == (1, 4000, [])


def test_short_absences_are_recorded_but_not_counted() -> None:
    h = History()
    h.tab_switch(1500)
    h.tab_switch(600_000)
    policy = LockdownPolicy(ignore_absence_under_ms=2000, allowed_tab_switches=5)
    result = assess(policy, h.events)
    assert len(result.incidents) == 2
    assert [i.counted_departure for i in result.incidents] == [False, True]
    assert result.tab_switches == 1


@pytest.mark.parametrize("action", ["warn", "flag", "pause", "terminate"])
def test_going_past_the_allowed_switches_applies_the_policys_action(action: str) -> None:
    h = History()
    for _ in range(3):
        h.tab_switch(5000)
    policy = LockdownPolicy(allowed_tab_switches=2, on_exceed=action)  # type: ignore[arg-type]
    result = assess(policy, h.events)
    assert result.tab_switches == 3
    (violation,) = result.violations
    assert (violation.rule, violation.action) == ("tab_switch_limit", action)
    assert violation.incident_id == result.incidents[2].id
    # The violation links to the events up to the return that counted (the incident goes on).
    assert violation.event_ids == tuple(result.incidents[2].event_ids[:3])
    assert "3 times (allowed 2); away 5.0 s" in violation.reason


def test_without_a_limit_switches_are_counted_never_acted_on() -> None:
    h = History()
    for _ in range(10):
        h.tab_switch(5000)
    result = assess(LockdownPolicy(), h.events)
    assert (result.tab_switches, result.violations) == (10, [])


def test_leaving_required_fullscreen_warns_and_counts_as_leaving_the_exam() -> None:
    h = History()
    h.add("fullscreen_exit", after=30)
    h.add("fullscreen_enter", after=20, duration_ms=20_000)
    required = assess(LockdownPolicy(require_fullscreen=True, allowed_tab_switches=0), h.events)
    assert [(v.rule, v.action) for v in required.violations] == [
        ("fullscreen_exit", "warn"),
        ("tab_switch_limit", "warn"),
    ]
    assert required.tab_switches == 1
    optional = assess(LockdownPolicy(allowed_tab_switches=0), h.events)
    assert (optional.tab_switches, optional.violations) == (0, [])


def test_a_fullscreen_exit_with_a_tab_switch_is_counted_once() -> None:
    h = History()
    h.add("fullscreen_exit", after=30)
    h.tab_switch(8000, after=0.1)
    h.add("fullscreen_enter", after=1, duration_ms=9000)
    result = assess(LockdownPolicy(require_fullscreen=True), h.events)
    assert (len(result.incidents), result.tab_switches) == (1, 1)


def test_copy_paste_when_forbidden_flags_each_incident_once() -> None:
    h = History()
    h.add("copy", after=10)
    h.add("paste", after=1)
    h.add("paste", after=100)
    forbidden = assess(LockdownPolicy(forbid_copy_paste=True), h.events)
    assert [(v.rule, v.action) for v in forbidden.violations] == [("copy_paste", "flag")] * 2
    assert assess(LockdownPolicy(), h.events).violations == []


def test_a_long_absence_is_one_incident_from_leaving_to_coming_back() -> None:
    h = History()
    h.add("tab_hidden", after=30)
    h.add("network_offline", after=40)
    h.add("network_online", after=200, duration_ms=200_000)
    h.add("tab_visible", after=300, duration_ms=540_000)
    h.add("copy", after=60)  # well after the return: a new incident
    result = assess(LockdownPolicy(), h.events)
    assert [i.event_ids for i in result.incidents] == [[1, 2, 3, 4], [5]]
    assert result.incidents[0].longest_absence_ms == 540_000


def test_highlights_are_monitored_but_never_open_an_incident() -> None:
    h = History()
    h.add("text_highlighted", after=5)
    h.add("text_highlighted", after=5)
    assert assess(LockdownPolicy(), h.events).incidents == []


def test_only_what_a_new_event_adds_is_new() -> None:
    h = History()
    h.tab_switch(5000)
    h.tab_switch(5000)
    policy = LockdownPolicy(allowed_tab_switches=1, on_exceed="flag")
    before = assess(policy, h.events[:-3])  # the second return not yet reported
    after = assess(policy, h.events)
    assert [v.rule for v in new_violations(before, after)] == ["tab_switch_limit"]
    assert new_violations(after, after) == []


def test_the_same_history_always_gives_the_same_verdict() -> None:
    h = History()
    for away in (1000, 3000, 700_000):
        h.tab_switch(away)
    h.add("paste")
    policy = LockdownPolicy(allowed_tab_switches=1, forbid_copy_paste=True)
    assert assess(policy, h.events) == assess(policy, list(h.events))


def test_a_policy_is_strict_about_what_it_accepts() -> None:
    with pytest.raises(ValidationError, match="require_seb needs"):
        LockdownPolicy(require_seb=True)
    with pytest.raises(ValidationError, match="64 hex"):
        LockdownPolicy(seb_config_keys=["abc"])
    with pytest.raises(ValidationError, match="extra"):
        LockdownPolicy.model_validate({"lock_everything": True})
    keyed = LockdownPolicy(require_seb=True, seb_config_keys=["A" * 64])
    assert keyed.seb_config_keys == ["a" * 64]
    assert "seb_config_keys" not in keyed.public()
    assert keyed.public()["require_seb"] is True


CONFIG_KEY = "c" * 64
EXAM_KEY = "e" * 64
URL = "https://exam.example.org/api/v1/attempts/abc/start"


def test_seb_headers_computed_from_the_url_and_key_pass() -> None:
    policy = LockdownPolicy(
        require_seb=True, seb_config_keys=[CONFIG_KEY], seb_browser_exam_keys=[EXAM_KEY]
    )
    headers = {
        seb.CONFIG_KEY_HEADER: seb.expected_hash(URL, CONFIG_KEY),
        seb.REQUEST_HASH_HEADER: seb.expected_hash(URL, EXAM_KEY).upper(),
    }
    assert seb.check(policy, URL + "#fragment", headers).ok


def test_seb_headers_missing_forged_or_replayed_from_another_url_are_refused() -> None:
    policy = LockdownPolicy(require_seb=True, seb_config_keys=[CONFIG_KEY])
    assert seb.check(policy, URL, {}).code == "seb_required"
    forged = {seb.CONFIG_KEY_HEADER: seb.expected_hash(URL, "f" * 64)}
    assert seb.check(policy, URL, forged).code == "seb_key_invalid"
    elsewhere = {seb.CONFIG_KEY_HEADER: seb.expected_hash(URL + "?x=1", CONFIG_KEY)}
    assert seb.check(policy, URL, elsewhere).code == "seb_key_invalid"
    assert seb.check(LockdownPolicy(), URL, {}).ok


def test_seb_checks_each_configured_kind_of_key() -> None:
    policy = LockdownPolicy(require_seb=True, seb_browser_exam_keys=[EXAM_KEY, "d" * 64])
    only_config = {seb.CONFIG_KEY_HEADER: seb.expected_hash(URL, CONFIG_KEY)}
    assert seb.check(policy, URL, only_config).code == "seb_key_invalid"
    second_browser = {seb.REQUEST_HASH_HEADER: seb.expected_hash(URL, "d" * 64)}
    assert seb.check(policy, URL, second_browser).ok
