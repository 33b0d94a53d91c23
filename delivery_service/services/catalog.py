"""Authoring and listing tests (inline items for now; the item bank arrives with test_assembly)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Forbidden, NotFound
from delivery_service.schemas import ItemOut, TestIn, TestOut
from delivery_service.services.security import Principal
from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import Entry, Ledger
from delivery_service.storage.models import Item, Test
from integrity.policy import LockdownPolicy, policy_of


class CatalogService:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, principal: Principal, spec: TestIn) -> TestOut:
        if not principal.is_staff:
            raise Forbidden("only teachers and admins create tests")
        async with self._sessions() as s, s.begin():
            test = await add_test(s, spec, created_by=principal.user_id)
            return await self._out(s, test, principal)

    async def set_lockdown(
        self, principal: Principal, test_id: uuid.UUID, policy: LockdownPolicy, *, ledger: Ledger
    ) -> TestOut:
        """Change a test's lockdown policy; running attempts follow it from their next event.
        Recorded in the audit trail like any staff action."""
        if not principal.is_staff:
            raise Forbidden("only teachers and admins change a test's lockdown")
        async with self._sessions() as s, s.begin():
            test = await s.get(Test, test_id, with_for_update=True)
            if test is None:
                raise NotFound("test", test_id)
            before = policy_of(test.lockdown).public()
            test.lockdown = policy.model_dump()
            entry = Entry(
                chain=f"test:{test.id}",
                type="lockdown_changed",
                source="staff",
                actor_id=principal.user_id,
                payload={"test_id": str(test.id), "before": before, "after": policy.public()},
            )
            await ledger.append(s, entry, await db_now(s))
            return await self._out(s, test, principal)

    async def list_tests(self, principal: Principal) -> list[TestOut]:
        async with self._sessions() as s, s.begin():
            tests = await s.scalars(select(Test).order_by(Test.created_at.desc()))
            return [await self._out(s, t, principal, with_items=False) for t in tests]

    async def get(self, principal: Principal, test_id: uuid.UUID) -> TestOut:
        async with self._sessions() as s, s.begin():
            test = await s.get(Test, test_id)
            if test is None:
                raise NotFound("test", test_id)
            return await self._out(s, test, principal)

    @staticmethod
    async def _out(
        s: AsyncSession, test: Test, principal: Principal, *, with_items: bool = True
    ) -> TestOut:
        items = None
        count = await s.scalar(select(func.count()).where(Item.test_id == test.id))
        if with_items and principal.is_staff:
            rows = await s.scalars(
                select(Item).where(Item.test_id == test.id).order_by(Item.position)
            )
            items = [
                ItemOut(
                    identifier=r.identifier,
                    type=r.type,
                    prompt=r.body["prompt"],
                    choices=r.body.get("choices"),
                    max_choices=r.body.get("max_choices"),
                    correct=r.scoring["correct"],
                    points=r.scoring["points"],
                )
                for r in rows
            ]
        policy = policy_of(test.lockdown)
        return TestOut(
            id=test.id,
            title=test.title,
            time_limit_seconds=test.time_limit_seconds,
            navigation_mode=test.navigation_mode,
            attempt_limit=test.attempt_limit,
            allow_pause=test.allow_pause,
            item_count=int(count or 0),
            created_at=test.created_at,
            items=items,
            lockdown=policy.model_dump() if principal.is_staff else policy.public(),
        )


async def add_test(s: AsyncSession, spec: TestIn, *, created_by: uuid.UUID) -> Test:
    """Insert a test and its items in the caller's transaction."""
    now = await db_now(s)
    test = Test(
        title=spec.title,
        time_limit_seconds=spec.time_limit_seconds,
        navigation_mode=spec.navigation_mode,
        attempt_limit=spec.attempt_limit,
        allow_pause=spec.allow_pause,
        lockdown=spec.lockdown.model_dump(),
        created_by=created_by,
        created_at=now,
    )
    s.add(test)
    await s.flush()
    for position, item in enumerate(spec.items):
        correct = sorted(set(item.correct))
        max_choices = item.max_choices
        if max_choices is None:
            max_choices = 1 if len(correct) == 1 else 0
        s.add(
            Item(
                test_id=test.id,
                position=position,
                identifier=item.identifier,
                type=item.type,
                body={
                    "prompt": item.prompt,
                    "choices": [c.model_dump() for c in item.choices],
                    "max_choices": max_choices,
                },
                scoring={"correct": correct, "points": item.points},
            )
        )
    await s.flush()
    return test
