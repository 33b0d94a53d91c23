"""A test as a caller sees it (`TestOut`), and which tests a caller is shown.

Staff see every test with everything about it, except that of its audience a teacher sees only
the classes they teach (admins all); a candidate sees a test only when it is theirs
(domain/availability.py): never its items' answers, its blueprint, its policies or its
networks, and of its audience only their own classes.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.domain import availability as rules
from delivery_service.domain.principal import Principal
from delivery_service.read_models.tests import ItemOut, TestOut
from delivery_service.services.audience import reserved_tests, seen_classes
from delivery_service.services.bank import definition_of
from delivery_service.storage.database import db_now
from delivery_service.storage.models import GroupSession, Item, Test
from integrity.policy import policy_of
from test_assembly.model import Blueprint, Policies


async def visible_tests(s: AsyncSession, principal: Principal) -> list[TestOut]:
    """Staff: every test, newest first. A student: the tests assigned to one of their active
    classes that are open now or will open (never closed ones, never a session's paper)."""
    now = await db_now(s)
    tests = list(await s.scalars(select(Test).order_by(Test.created_at.desc())))
    reserved = await reserved_tests(s)
    seen = await seen_classes(s, principal)
    if principal.is_staff:
        return [
            await describe_test(
                s, t, principal, now=now, seen=seen, reserved=t.id in reserved, with_items=False
            )
            for t in tests
        ]
    classes = seen or frozenset()
    return [
        await describe_test(s, t, principal, now=now, seen=classes, with_items=False)
        for t in tests
        if rules.listed(t, classes=classes, reserved=t.id in reserved, now=now)
    ]


async def visible_test(s: AsyncSession, principal: Principal, test: Test) -> TestOut:
    """One test; a student outside its audience is told it does not exist (404)."""
    now = await db_now(s)
    seen = await seen_classes(s, principal)
    if not principal.is_staff:
        rules.require_visible(test, seen or frozenset())
    return await describe_test(s, test, principal, now=now, seen=seen)


async def describe_test(
    s: AsyncSession,
    test: Test,
    principal: Principal,
    *,
    now: datetime,
    seen: Collection[str] | None = None,
    reserved: bool | None = None,
    with_items: bool = True,
) -> TestOut:
    """The test for `principal` at `now`. `seen`: the classes of its audience they are shown
    (None: all; audience.seen_classes); `reserved`: whether a session uses it, if known."""
    staff = principal.is_staff
    items = None
    if test.blueprint is not None:
        count: int | None = Blueprint.model_validate(test.blueprint).form_length()
    else:
        count = await s.scalar(select(func.count()).where(Item.test_id == test.id))
    if with_items and staff:
        rows = await s.scalars(select(Item).where(Item.test_id == test.id).order_by(Item.position))
        items = [
            ItemOut(
                identifier=r.identifier,
                type=r.type,
                prompt=r.body["prompt"],
                choices=r.body.get("choices"),
                max_choices=r.body.get("max_choices"),
                correct=r.scoring.get("correct"),
                points=r.scoring.get("points"),
                definition=definition_of(r),
            )
            for r in rows
        ]
    if staff and reserved is None:
        reserved = bool(await s.scalar(select(exists().where(GroupSession.test_id == test.id))))
    policy = policy_of(test.lockdown)
    audience = [c for c in test.assigned_to if seen is None or c in seen]
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
        lockdown=policy.model_dump() if staff else policy.public(),
        blueprint=Blueprint.model_validate(test.blueprint) if staff and test.blueprint else None,
        policies=Policies.model_validate(test.policies or {}) if staff else None,
        assigned_to=[uuid.UUID(c) for c in audience],
        opens_at=test.opens_at,
        closes_at=test.closes_at,
        window=rules.window(test.opens_at, test.closes_at, now),
        password_required=test.access_password_hash is not None,
        allowed_networks=list(test.allowed_networks) if staff else None,
        reserved_for_session=reserved if staff else None,
    )
