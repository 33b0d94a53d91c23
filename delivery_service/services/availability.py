"""Who may take a test self-paced, and when, beyond creating an attempt (services/audience.py
and attempts/creation.py): the network gate on every candidate request about an attempt, and
the authors' `PUT /tests/{id}/availability`."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain import availability as rules
from delivery_service.domain.errors import Forbidden, NotFound
from delivery_service.domain.principal import Principal
from delivery_service.domain.timing import iso
from delivery_service.read_models.tests import TestOut
from delivery_service.schemas.tests import AvailabilityIn
from delivery_service.services.audience import AccessPasswords, require_assignable, seen_classes
from delivery_service.services.evidence import Observations
from delivery_service.services.listing import describe_test
from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import Ledger
from delivery_service.storage.models import Attempt, Test
from integrity.events import NETWORK_REFUSED

# ---- the network gate -------------------------------------------------------------------------


class NetworkGate:
    """A test with `allowed_networks` refuses a candidate's request about one of its attempts
    from any other address (`network_not_allowed`, on the attempt's ledger chain). The address
    is the client's as uvicorn resolved it: `X-Forwarded-For` only from a trusted proxy
    (`EXAMSERVER_FORWARDED_ALLOW_IPS`). Staff are not candidates and are not held to it."""

    def __init__(self, *, db: async_sessionmaker[AsyncSession], observations: Observations) -> None:
        self._db = db
        self._observations = observations

    async def require(
        self, principal: Principal, *, client: str | None, attempt_id: uuid.UUID
    ) -> None:
        if principal.is_staff:
            return
        async with self._db() as s:
            networks = await s.scalar(
                select(Test.allowed_networks)
                .join(Attempt, Attempt.test_id == Test.id)
                .where(Attempt.id == attempt_id)
            )
        if not networks or rules.network_allowed(networks, client):
            return  # (no such attempt: the route answers its 404)
        await self._observations.record(
            type_=NETWORK_REFUSED,
            candidate_id=principal.user_id,
            attempt_id=attempt_id,
            actor_id=principal.user_id,
            payload=network_refusal(client),
        )
        rules.require_network(networks, client)


def network_refusal(client: str | None) -> dict[str, Any]:
    """The ledger payload of a request refused for its network."""
    return {"code": "network_not_allowed", "client": client}


# ---- authoring --------------------------------------------------------------------------------


class AvailabilityService:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        passwords: AccessPasswords,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._passwords = passwords

    async def set(self, principal: Principal, test_id: uuid.UUID, spec: AvailabilityIn) -> TestOut:
        """Replace a test's audience, window and networks, and set, clear or keep its access
        password. An admin may; a teacher only for a test they wrote, and of its audience only
        the classes they teach (others stay as they are). Recorded on the test's ledger chain
        (`availability_changed`, the password as whether one is set, never its hash)."""
        if not principal.is_staff:
            raise Forbidden("only teachers and admins change a test's availability")
        new_hash = await self._passwords.hash(spec.password) if spec.password else None
        async with self._db() as s, s.begin():
            test = await s.get(Test, test_id, with_for_update=True)
            if test is None:
                raise NotFound("test", test_id)
            if principal.role != "admin" and test.created_by != principal.user_id:
                raise Forbidden("only the test's author or an admin can change its availability")
            await require_assignable(s, principal, spec.assigned_to, before=test.assigned_to)
            seen = await seen_classes(s, principal)
            # A teacher sees (and so replaces) only the classes they teach; the others stay.
            kept = [c for c in test.assigned_to if seen is not None and c not in seen]
            before = _public(test)
            test.assigned_to = kept + [str(c) for c in spec.assigned_to if str(c) not in kept]
            test.opens_at = spec.opens_at
            test.closes_at = spec.closes_at
            test.allowed_networks = list(spec.allowed_networks)
            if spec.password_given:
                test.access_password_hash = new_hash
            now = await db_now(s)
            await self._ledger.record(
                s,
                now,
                chain=f"test:{test.id}",
                type="availability_changed",
                source="staff",
                actor_id=principal.user_id,
                payload={
                    "test_id": str(test.id),
                    "before": before,
                    "after": _public(test),
                    "password": ("set" if spec.password else "cleared")
                    if spec.password_given
                    else "kept",
                },
            )
            return await describe_test(s, test, principal, now=now, seen=seen)


def _public(test: Test) -> dict[str, Any]:
    """A test's availability as the ledger keeps it (the password only as set or not)."""
    return {
        "assigned_to": list(test.assigned_to),
        "opens_at": iso(test.opens_at) if test.opens_at else None,
        "closes_at": iso(test.closes_at) if test.closes_at else None,
        "allowed_networks": list(test.allowed_networks),
        "password_required": test.access_password_hash is not None,
    }
