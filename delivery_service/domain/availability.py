"""Who may see and start a test self-paced, and when (issue 19): its audience, its window, its
access password and the client networks it may be taken from.

Pure: the caller loads the facts (services/availability.py reads the test's row, the student's
active classes and whether a proctored session uses the test) and the database clock, and asks
here. Staff are not candidates: these rules are for students (staff see every test and may
open a preview attempt of any).

- **Audience**: the students of the classes in `assigned_to` (active classes only; none:
  staff only). A student outside it is told nothing (404, as for an unknown test).
- **Reserved for a session**: a test that any proctored session uses, whatever the session's
  state (completed and cancelled included), is never taken self-paced: a session paper does
  not become a practice test when its session ends, and a student who never joined cannot take
  it unsupervised. The session's own students are told to join it (409 with the session's id).
- **Window**: `[opens_at, closes_at)`, either end open. An attempt's deadline never passes
  `closes_at` by the candidate's own doing (`capped_deadline`, `resumed_deadline`).
- **Networks**: with `allowed_networks`, every candidate request about an attempt of the test
  must come from one of them (the address as the trusted-proxy setting resolves it).
- **Password**: checked when the attempt is created; missing and wrong are told apart.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from delivery_service.domain.errors import Conflict, DomainError, NotFound
from delivery_service.domain.timing import iso

Window = Literal["upcoming", "open", "closed"]

#: the most networks one test may list (an allow list, not a routing table)
MAX_NETWORKS = 100


class Refused(DomainError):
    """A candidate may not do this with this test from here (403); `code` says why."""

    def __init__(self, code: str, message: str, **details: object) -> None:
        self.code = code
        super().__init__(message, **details)


class TestRules(Protocol):
    """The columns of a test these rules read (storage.models.Test has them)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def assigned_to(self) -> list[str]: ...
    @property
    def opens_at(self) -> datetime | None: ...
    @property
    def closes_at(self) -> datetime | None: ...
    @property
    def access_password_hash(self) -> str | None: ...
    @property
    def allowed_networks(self) -> list[str]: ...


@dataclass(frozen=True)
class Reservation:
    """A proctored session uses the test; `session_id` is named only when the student is
    enrolled in that session's class (to anyone else it is another class's business)."""

    session_id: uuid.UUID | None


# ---- the window --------------------------------------------------------------------------------


def window(opens_at: datetime | None, closes_at: datetime | None, now: datetime) -> Window:
    if opens_at is not None and now < opens_at:
        return "upcoming"
    if closes_at is not None and now >= closes_at:
        return "closed"
    return "open"


def require_open(test: TestRules, now: datetime) -> None:
    """Refuse outside the window: `test_not_open` (with `opens_at`) or `test_closed`."""
    where = window(test.opens_at, test.closes_at, now)
    if where == "upcoming" and test.opens_at is not None:
        raise Conflict(
            "test_not_open",
            f"this test opens at {iso(test.opens_at)}",
            opens_at=iso(test.opens_at),
        )
    if where == "closed" and test.closes_at is not None:
        raise Conflict(
            "test_closed",
            f"this test closed at {iso(test.closes_at)}",
            closes_at=iso(test.closes_at),
        )


def capped_deadline(deadline: datetime, closes_at: datetime | None) -> datetime:
    """A self-paced attempt ends when its time is up or when the window closes, whichever comes
    first: starting late never buys time past `closes_at`."""
    return deadline if closes_at is None else min(deadline, closes_at)


def resumed_deadline(before: datetime, after: datetime, closes_at: datetime | None) -> datetime:
    """The deadline after a pause (`after`, moved by the pause's length from `before`): a pause
    does not carry an attempt past the window's end either. A deadline already past it (staff
    gave the time on purpose) keeps all of it."""
    if closes_at is None or before > closes_at:
        return after
    return min(after, closes_at)


# ---- the audience ------------------------------------------------------------------------------


def in_audience(assigned_to: Iterable[str], classes: Collection[str]) -> bool:
    """Whether a student enrolled in `classes` (active class ids) is in the test's audience."""
    return any(class_id in classes for class_id in assigned_to)


def listed(test: TestRules, *, classes: Collection[str], reserved: bool, now: datetime) -> bool:
    """Whether a student's list of tests shows it: theirs, not a session paper, open now or
    upcoming (so the app can show when it opens); never closed."""
    return (
        in_audience(test.assigned_to, classes)
        and not reserved
        and window(test.opens_at, test.closes_at, now) != "closed"
    )


def require_visible(test: TestRules, classes: Collection[str]) -> None:
    """A student outside the audience is not told the test exists."""
    if not in_audience(test.assigned_to, classes):
        raise NotFound("test", test.id)


def require_startable(
    test: TestRules,
    *,
    classes: Collection[str],
    reservation: Reservation | None,
    now: datetime,
    client: str | None,
) -> None:
    """Everything a student's new attempt needs except the password (checked apart, off the
    event loop): the audience, no proctored session, the window, the network. In this order,
    so that a student outside the audience learns nothing else (404)."""
    audience = in_audience(test.assigned_to, classes)
    if reservation is not None and (audience or reservation.session_id is not None):
        details = {"session_id": str(reservation.session_id)} if reservation.session_id else {}
        raise Conflict(
            "reserved_for_session",
            "this test is a proctored session's paper; it is never taken self-paced"
            + ("; join the session instead" if reservation.session_id else ""),
            **details,
        )
    if not audience:
        raise NotFound("test", test.id)
    require_open(test, now)
    require_network(test.allowed_networks, client)


def require_password(*, required: bool, given: str | None, verified: bool | None) -> None:
    """`password_required` when the test has one and none was sent; `password_incorrect` when
    the one sent did not match (`verified` False)."""
    if not required:
        return
    if given is None:
        raise Refused("password_required", "this test needs its access password")
    if not verified:
        raise Refused("password_incorrect", "that is not this test's access password")


# ---- networks ----------------------------------------------------------------------------------


def normalize_network(value: str) -> str:
    """A CIDR network (IPv4 or IPv6) in its canonical form; an address alone is a network of
    one, and host bits are cleared (`10.1.2.3/24` is `10.1.2.0/24`). ValueError naming the
    value otherwise."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 network (CIDR)") from None


def network_allowed(networks: Iterable[str], client: str | None) -> bool:
    """Whether `client` (an address as text) is in one of `networks`; any address when there are
    none. An address that cannot be read (none, a test client's name) is in none. An IPv4
    address seen as IPv6 (`::ffff:10.0.0.7`, a dual-stack socket) is checked as IPv4 too."""
    allowed = [ipaddress.ip_network(n) for n in networks]
    if not allowed:
        return True
    if client is None:
        return False
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    forms: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        forms.append(address.ipv4_mapped)
    return any(
        form in network for form in forms for network in allowed if form.version == network.version
    )


def require_network(networks: Iterable[str], client: str | None) -> None:
    if not network_allowed(networks, client):
        raise Refused(
            "network_not_allowed",
            "this test may only be taken from the exam room's network",
            client=client,
        )
