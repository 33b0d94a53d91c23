"""The Safe Exam Browser gate for candidates' requests: a test that requires SEB refuses a
request that does not prove it (integrity.seb decides), and the refusal goes on the ledger."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import SebRequired
from delivery_service.domain.principal import Principal
from delivery_service.services.evidence.observations import Observations
from delivery_service.storage.models import Attempt, GroupSession, Test
from integrity.events import SEB_CHECK_FAILED
from integrity.policy import policy_of
from integrity.seb import SebCheck, check, strip_fragment


class SebGate:
    def __init__(self, *, db: async_sessionmaker[AsyncSession], observations: Observations) -> None:
        self._db = db
        self._observations = observations

    async def require(
        self,
        principal: Principal,
        *,
        url: str,
        headers: Mapping[str, str],
        test_id: uuid.UUID | None = None,
        attempt_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
    ) -> bool:
        """Refuse a candidate's request when the test requires Safe Exam Browser and the request
        does not prove it (integrity.seb). True when SEB was required and verified. Staff are
        not candidates: they never sit the test, so they are not held to it."""
        if principal.is_staff:
            return False
        async with self._db() as s:
            if attempt_id is not None:
                row = await s.execute(
                    select(Attempt.test_id, Attempt.session_id).where(Attempt.id == attempt_id)
                )
                found = row.first()
                if found is None:
                    return False  # the route answers the 404
                test_id, session_id = found
            elif session_id is not None:
                test_id = await s.scalar(
                    select(GroupSession.test_id).where(GroupSession.id == session_id)
                )
            if test_id is None:
                return False
            lockdown = await s.scalar(select(Test.lockdown).where(Test.id == test_id))
        policy = policy_of(lockdown)
        result = check(policy, url, headers)
        if result.ok:
            return policy.require_seb
        await self._observations.record(
            type_=SEB_CHECK_FAILED,
            candidate_id=principal.user_id,
            attempt_id=attempt_id,
            session_id=session_id,
            actor_id=principal.user_id,
            payload=seb_failure(result, url, test_id),
        )
        raise SebRequired(result.code, result.message)


def seb_failure(result: SebCheck, url: str, test_id: uuid.UUID) -> dict[str, Any]:
    """The ledger payload of a refused Safe Exam Browser check: which check, on which page
    (without its query, which may carry a ticket), for which test."""
    return {
        "code": result.code,
        "url": strip_fragment(url).split("?", 1)[0],
        "test_id": str(test_id),
    }
