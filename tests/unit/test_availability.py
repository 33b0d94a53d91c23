"""Who may see and start a test self-paced, and when (domain/availability.py), on a fixed clock;
and when a session's waiting room may open (domain/sessions.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from delivery_service.domain import availability as rules
from delivery_service.domain.availability import Refused, Reservation
from delivery_service.domain.errors import Conflict, NotFound
from delivery_service.domain.sessions import require_waiting_room_due, waiting_room_opens_at

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINE, OTHER = "c-mine", "c-other"


@dataclass
class Paper:
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    assigned_to: list[str] = field(default_factory=lambda: [MINE])
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    access_password_hash: str | None = None
    allowed_networks: list[str] = field(default_factory=list)


def startable(paper: Paper, **facts: object) -> None:
    given: dict[str, object] = {
        "classes": {MINE},
        "reservation": None,
        "now": NOW,
        "client": "10.0.0.7",
    }
    given.update(facts)
    rules.require_startable(paper, **given)  # type: ignore[arg-type]


# ---- the window --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opens_at", "closes_at", "expected"),
    [
        (None, None, "open"),
        (NOW + HOUR, None, "upcoming"),
        (NOW, None, "open"),  # opens_at is inclusive
        (None, NOW, "closed"),  # closes_at is not
        (NOW - HOUR, NOW + HOUR, "open"),
        (NOW - 2 * HOUR, NOW - HOUR, "closed"),
    ],
)
def test_the_window_is_opens_at_inclusive_to_closes_at_exclusive(
    opens_at: datetime | None, closes_at: datetime | None, expected: str
) -> None:
    assert rules.window(opens_at, closes_at, NOW) == expected


def test_a_test_not_open_yet_is_refused_with_its_opening_time() -> None:
    with pytest.raises(Conflict, match="opens at 2026-12-03T10:00:00.000Z") as refused:
        startable(Paper(opens_at=NOW + HOUR))
    assert refused.value.code == "test_not_open"
    assert refused.value.details == {"opens_at": "2026-12-03T10:00:00.000Z"}


def test_a_closed_test_is_refused() -> None:
    with pytest.raises(Conflict, match="closed at") as refused:
        startable(Paper(closes_at=NOW))
    assert refused.value.code == "test_closed"


def test_a_deadline_is_capped_at_the_window_end() -> None:
    assert rules.capped_deadline(NOW + HOUR, NOW + 2 * HOUR) == NOW + HOUR
    assert rules.capped_deadline(NOW + HOUR, NOW + timedelta(minutes=20)) == NOW + timedelta(
        minutes=20
    )
    assert rules.capped_deadline(NOW + HOUR, None) == NOW + HOUR


def test_a_pause_does_not_carry_an_attempt_past_the_window_end() -> None:
    closes = NOW + HOUR
    # Paused ten minutes with the deadline at the window's end: still the window's end.
    assert rules.resumed_deadline(closes, closes + timedelta(minutes=10), closes) == closes
    # Well inside the window, a pause moves the deadline as always.
    before = NOW + timedelta(minutes=20)
    assert rules.resumed_deadline(before, before + timedelta(minutes=10), closes) == (
        before + timedelta(minutes=10)
    )
    # Time staff gave past the window on purpose is kept, and so are its pauses.
    past = closes + timedelta(minutes=5)
    assert rules.resumed_deadline(past, past + timedelta(minutes=3), closes) == past + timedelta(
        minutes=3
    )
    assert rules.resumed_deadline(before, before + HOUR, None) == before + HOUR


# ---- the audience ------------------------------------------------------------------------------


def test_a_student_outside_the_audience_is_told_nothing() -> None:
    paper = Paper(assigned_to=[OTHER], opens_at=NOW + HOUR, access_password_hash="x")
    with pytest.raises(NotFound):
        startable(paper)
    with pytest.raises(NotFound):
        rules.require_visible(paper, {MINE})
    rules.require_visible(paper, {MINE, OTHER})


def test_an_empty_audience_is_staff_only() -> None:
    with pytest.raises(NotFound):
        startable(Paper(assigned_to=[]))
    assert not rules.listed(Paper(assigned_to=[]), classes={MINE}, reserved=False, now=NOW)


def test_a_students_list_shows_open_and_upcoming_tests_never_closed_or_session_papers() -> None:
    def listed(paper: Paper, reserved: bool = False) -> bool:
        return rules.listed(paper, classes={MINE}, reserved=reserved, now=NOW)

    assert listed(Paper())
    assert listed(Paper(opens_at=NOW + HOUR))
    assert not listed(Paper(closes_at=NOW - HOUR))
    assert not listed(Paper(), reserved=True)
    assert not listed(Paper(assigned_to=[OTHER]))


def test_a_session_paper_is_refused_to_its_class_with_the_session_to_join() -> None:
    session = uuid.uuid4()
    with pytest.raises(Conflict, match="join the session") as refused:
        # Not assigned to the student's class: the session's own class is told all the same.
        startable(Paper(assigned_to=[]), reservation=Reservation(session))
    assert refused.value.code == "reserved_for_session"
    assert refused.value.details == {"session_id": str(session)}


def test_a_session_paper_is_refused_to_its_audience_without_naming_the_session() -> None:
    with pytest.raises(Conflict) as refused:
        startable(Paper(), reservation=Reservation(None))
    assert refused.value.code == "reserved_for_session"
    assert refused.value.details == {}
    with pytest.raises(NotFound):  # anyone else: not told it exists
        startable(Paper(assigned_to=[OTHER]), reservation=Reservation(None))


def test_the_audience_is_checked_before_the_window_password_and_network() -> None:
    paper = Paper(assigned_to=[OTHER], closes_at=NOW, allowed_networks=["192.168.0.0/16"])
    with pytest.raises(NotFound):
        startable(paper)


# ---- the password ------------------------------------------------------------------------------


def test_a_missing_and_a_wrong_password_are_told_apart() -> None:
    rules.require_password(required=False, given=None, verified=None)
    rules.require_password(required=True, given="right", verified=True)
    with pytest.raises(Refused) as missing:
        rules.require_password(required=True, given=None, verified=None)
    assert missing.value.code == "password_required"
    with pytest.raises(Refused) as wrong:
        rules.require_password(required=True, given="wrong", verified=False)
    assert wrong.value.code == "password_incorrect"


# ---- networks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("10.1.2.3/24", "10.1.2.0/24"),
        (" 10.1.2.3 ", "10.1.2.3/32"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("::1", "::1/128"),
    ],
)
def test_networks_are_stored_in_canonical_form(written: str, canonical: str) -> None:
    assert rules.normalize_network(written) == canonical


@pytest.mark.parametrize("bad", ["", "10.0.0.0/33", "exam-room", "10.0.0.0/8/8", "fe80::/129"])
def test_a_network_that_is_not_one_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="not an IPv4 or IPv6 network"):
        rules.normalize_network(bad)


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("10.20.30.40", True),
        ("10.21.0.1", False),
        ("::ffff:10.20.0.9", True),  # an IPv4 client on a dual-stack socket
        ("2001:db8:1::5", True),
        ("2001:db9::5", False),
        ("fe80::1%eth0", False),  # a scoped address outside the networks
        ("testclient", False),  # not an address at all
        (None, False),
    ],
)
def test_a_client_is_allowed_only_from_the_listed_networks(
    client: str | None, allowed: bool
) -> None:
    networks = ["10.20.0.0/16", "2001:db8::/32"]
    assert rules.network_allowed(networks, client) is allowed
    if not allowed:
        with pytest.raises(Refused) as refused:
            startable(Paper(allowed_networks=networks), client=client)
        assert refused.value.code == "network_not_allowed"


def test_no_networks_means_any_client() -> None:
    assert rules.network_allowed([], None)
    assert rules.network_allowed([], "203.0.113.9")


# ---- scheduled sessions ------------------------------------------------------------------------


def test_a_waiting_room_opens_its_lead_time_before_the_session_and_not_sooner() -> None:
    lead = timedelta(minutes=30)
    scheduled = NOW + HOUR
    assert waiting_room_opens_at(scheduled, lead) == NOW + timedelta(minutes=30)
    with pytest.raises(Conflict, match="opens at 2026-12-03T09:30:00.000Z") as refused:
        require_waiting_room_due(scheduled, lead, NOW)
    assert refused.value.code == "session_not_open_yet"
    assert refused.value.details["opens_at"] == "2026-12-03T09:30:00.000Z"
    require_waiting_room_due(scheduled, lead, NOW + timedelta(minutes=30))
    require_waiting_room_due(NOW - HOUR, lead, NOW)  # late is never refused
