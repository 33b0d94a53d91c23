"""Violation rules: read an attempt's candidate events in ledger order and say what they add up to.

The assessment is a pure function of the ledger, so it can be recomputed at any time (for the
appeal report, or after a crash between an event and its consequence) and gives the same answer.
The service compares the assessment before and after each new event: what is new is acted on.

Bursts become incidents: events less than `INCIDENT_GAP` apart are one incident (a tab switch
is blur + hidden + visible + focus, often with a fullscreen exit), so a proctor sees one line per
thing that happened, not one per browser signal. A departure (tab switch, or leaving required
fullscreen) is counted when the candidate comes back, because only then is its length known; an
absence shorter than the policy's threshold is recorded and shown, not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from integrity import events as ev
from integrity.policy import Action, LockdownPolicy

INCIDENT_GAP = timedelta(seconds=10)
# A departure and its return: while one is open the candidate is away, and everything until they
# are back belongs to the same incident, however long it takes.
SPANS = {
    ev.TAB_HIDDEN: ev.TAB_VISIBLE,
    "window_blur": "window_focus",
    ev.FULLSCREEN_EXIT: ev.FULLSCREEN_ENTER,
    "network_offline": "network_online",
}
ENDS = {end: start for start, end in SPANS.items()}
NOT_IN_INCIDENTS = frozenset({ev.TEXT_HIGHLIGHTED})  # reading aids, monitored but not alerts


@dataclass(frozen=True)
class Observed:
    """One candidate event as the rules see it."""

    event_id: int
    kind: str
    at: datetime
    duration_ms: int | None = None


@dataclass
class Incident:
    id: int  # the event id of its first event: stable while it grows
    started_at: datetime
    last_at: datetime
    kinds: dict[str, int] = field(default_factory=dict)
    event_ids: list[int] = field(default_factory=list)
    longest_absence_ms: int | None = None
    counted_departure: bool = False
    open_spans: set[str] = field(default_factory=set, repr=False, compare=False)


@dataclass(frozen=True)
class Violation:
    rule: str
    action: Action
    incident_id: int
    event_ids: tuple[int, ...]
    reason: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.rule, self.incident_id)


@dataclass
class Assessment:
    incidents: list[Incident] = field(default_factory=list)
    tab_switches: int = 0
    violations: list[Violation] = field(default_factory=list)

    def incident_of(self, event_id: int) -> Incident | None:
        for incident in reversed(self.incidents):
            if event_id in incident.event_ids:
                return incident
        return None


def _is_return(policy: LockdownPolicy, kind: str) -> bool:
    if kind in (ev.TAB_VISIBLE, ev.TAB_VIOLATION):
        return True
    return kind == ev.FULLSCREEN_ENTER and policy.require_fullscreen


def assess(policy: LockdownPolicy, observed: Sequence[Observed]) -> Assessment:
    result = Assessment()
    current: Incident | None = None
    for e in observed:
        if e.kind in NOT_IN_INCIDENTS or e.kind not in ev.CANDIDATE_KINDS:
            continue
        away = current is not None and bool(current.open_spans)
        if current is None or (e.at - current.last_at > INCIDENT_GAP and not away):
            current = Incident(id=e.event_id, started_at=e.at, last_at=e.at)
            result.incidents.append(current)
        current.last_at = max(current.last_at, e.at)
        current.kinds[e.kind] = current.kinds.get(e.kind, 0) + 1
        current.event_ids.append(e.event_id)
        if e.kind in SPANS:
            current.open_spans.add(e.kind)
        elif e.kind in ENDS:
            current.open_spans.discard(ENDS[e.kind])
        if e.duration_ms is not None:
            current.longest_absence_ms = max(current.longest_absence_ms or 0, e.duration_ms)
        _apply(policy, result, current, e)
    return result


def _apply(policy: LockdownPolicy, result: Assessment, incident: Incident, e: Observed) -> None:
    ids = tuple(incident.event_ids)
    if _is_return(policy, e.kind) and not incident.counted_departure:
        long_enough = e.duration_ms is None or e.duration_ms >= policy.ignore_absence_under_ms
        if long_enough:
            incident.counted_departure = True
            result.tab_switches += 1
            allowed = policy.allowed_tab_switches
            if allowed is not None and result.tab_switches > allowed:
                away = f"; away {e.duration_ms / 1000:.1f} s" if e.duration_ms is not None else ""
                result.violations.append(
                    Violation(
                        rule="tab_switch_limit",
                        action=policy.on_exceed,
                        incident_id=incident.id,
                        event_ids=ids,
                        reason=(
                            f"left the exam {result.tab_switches} "
                            f"time{'' if result.tab_switches == 1 else 's'} "
                            f"(allowed {allowed}){away}"
                        ),
                    )
                )
    if e.kind in ev.COPY_PASTE and policy.forbid_copy_paste:
        _once(result, Violation("copy_paste", "flag", incident.id, ids, f"tried to {e.kind}"))
    if e.kind == ev.FULLSCREEN_EXIT and policy.require_fullscreen:
        _once(result, Violation("fullscreen_exit", "warn", incident.id, ids, "left fullscreen"))


def _once(result: Assessment, violation: Violation) -> None:
    if all(v.key != violation.key for v in result.violations):
        result.violations.append(violation)


def new_violations(before: Assessment, after: Assessment) -> list[Violation]:
    seen = {v.key for v in before.violations}
    return [v for v in after.violations if v.key not in seen]
