"""Authoring, listing, importing and exporting tests.

A test holds its own items (any interaction type), a blueprint whose sections draw from those
and from the item bank, and its policies. Creating one checks that the bank can fill the
blueprint now (one trial assembly), so a broken test is refused before a candidate meets it.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Forbidden, NotFound, Unprocessable
from delivery_service.domain.principal import Principal
from delivery_service.read_models.tests import QtiImportOut, QtiProblem, TestOut
from delivery_service.schemas.tests import TestIn
from delivery_service.services.access import sessions_taught_by
from delivery_service.services.adaptive import calibrated
from delivery_service.services.audience import (
    hash_access_password,
    require_assignable,
    seen_classes,
)
from delivery_service.services.bank import (
    available_items,
    candidate_of,
    definition_of,
    save_to_bank,
    version_row,
)
from delivery_service.services.listing import describe_test, visible_test, visible_tests
from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import Ledger
from delivery_service.storage.models import GroupSession, Item, Test
from integrity.policy import LockdownPolicy, policy_of
from test_assembly.adaptive import begin
from test_assembly.assembly import AssemblyError, assemble
from test_assembly.model import Blueprint, Policies, SectionDef, TestDefinition
from test_assembly.qti import PackageError, export_package, import_package
from test_assembly.rng import new_seed


class CatalogService:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        hash_cost: int,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._hash_cost = hash_cost

    async def create(self, principal: Principal, spec: TestIn) -> TestOut:
        """A new test by its author; its audience only of classes they may assign it to."""
        if not principal.is_staff:
            raise Forbidden("only teachers and admins create tests")
        password_hash = (
            await hash_access_password(spec.password, cost=self._hash_cost)
            if spec.password
            else None
        )
        async with self._db() as s, s.begin():
            await require_assignable(s, principal, spec.assigned_to)
            test = await add_test(
                s, spec, created_by=principal.user_id, password_hash=password_hash
            )
            seen = await seen_classes(s, principal)
            return await describe_test(s, test, principal, now=await db_now(s), seen=seen)

    async def import_qti(
        self, principal: Principal, data: bytes, *, all_or_nothing: bool = False
    ) -> QtiImportOut:
        """Items into the bank (a changed item becomes a new version), the test (if the package
        has one) as a new test drawing on them — all in one transaction, or nothing."""
        if not principal.is_staff:
            raise Forbidden("only teachers and admins import content")
        try:
            result = import_package(data, all_or_nothing=all_or_nothing)
        except PackageError as bad:
            raise Unprocessable(bad.code, bad.message, **bad.details) from None
        async with self._db() as s, s.begin():
            now = await db_now(s)
            outcomes = {}
            for item in result.items:
                _, _, outcome = await save_to_bank(
                    s, item, actor=principal.user_id, now=now, ledger=self._ledger,
                    reason="QTI import",
                )  # fmt: skip
                outcomes[item.identifier] = outcome
            test_id = None
            problems = [QtiProblem(**p.__dict__) for p in result.problems]
            if result.test is not None:
                definition = result.test
                spec = TestIn(
                    title=definition.title,
                    time_limit_seconds=definition.time_limit_seconds,
                    navigation_mode=definition.navigation_mode,
                    attempt_limit=definition.attempt_limit,
                    blueprint=definition.blueprint,
                    policies=definition.policies,
                )
                try:
                    # A savepoint: a test the server refuses (an adaptive section in a
                    # nonlinear test, a blueprint the bank cannot fill) leaves the items in.
                    async with s.begin_nested():
                        test = await add_test(s, spec, created_by=principal.user_id)
                except Unprocessable as refused:
                    if all_or_nothing:
                        raise
                    problems.append(
                        QtiProblem(
                            file=result.test_file or "imsmanifest.xml",
                            identifier=definition.identifier,
                            reason=f"test not imported ({refused.code}): {refused.message}",
                        )
                    )
                else:
                    test_id = test.id
                    await self._ledger.record(
                        s,
                        now,
                        chain=f"test:{test.id}",
                        type="test_imported",
                        source="staff",
                        actor_id=principal.user_id,
                        payload={
                            "identifier": definition.identifier,
                            "items": outcomes,
                            "problems": len(problems),
                        },
                    )
        return QtiImportOut(
            version=result.version,
            items=outcomes,
            test_id=test_id,
            problems=problems,
        )

    async def export_qti(self, principal: Principal, test_id: uuid.UUID) -> bytes:
        """The test, its own items and every bank item it can draw (current versions)."""
        if not principal.is_staff:
            raise Forbidden("only teachers and admins export content")
        async with self._db() as s:
            test = await s.get(Test, test_id)
            if test is None:
                raise NotFound("test", test_id)
            blueprint = await blueprint_of(s, test)
            rows = await available_items(s, test.id, blueprint)
            wanted = set(blueprint.referenced())
            pools = [set(sec.selection.tags) for sec in blueprint.sections if not sec.items]
            items = [
                definition_of(row)
                for ident, row in sorted(rows.items())
                if ident in wanted or any(p <= set(row.tags or []) for p in pools)
            ]
            definition = TestDefinition(
                identifier=f"test-{test.id}",
                title=test.title,
                time_limit_seconds=test.time_limit_seconds,
                navigation_mode="linear" if test.navigation_mode == "linear" else "nonlinear",
                attempt_limit=test.attempt_limit,
                blueprint=blueprint,
                policies=Policies.model_validate(test.policies or {}),
                items=items,
            )
        return export_package(definition)

    async def set_lockdown(
        self, principal: Principal, test_id: uuid.UUID, policy: LockdownPolicy, *, ledger: Ledger
    ) -> TestOut:
        """Change a test's lockdown policy; running attempts follow it from their next event.
        Recorded in the audit trail like any staff action. An admin may; a teacher only for a
        test they wrote that no session of a class they do not teach uses (the policy binds
        every class sitting the test)."""
        if not principal.is_staff:
            raise Forbidden("only teachers and admins change a test's lockdown")
        async with self._db() as s, s.begin():
            test = await s.get(Test, test_id, with_for_update=True)
            if test is None:
                raise NotFound("test", test_id)
            if principal.role != "admin":
                if test.created_by != principal.user_id:
                    raise Forbidden("only the test's author or an admin can change its lockdown")
                foreign = await s.scalar(
                    select(GroupSession.id)
                    .where(GroupSession.test_id == test.id, ~sessions_taught_by(principal))
                    .limit(1)
                )
                if foreign is not None:
                    raise Forbidden(
                        "a session of a class you do not teach uses this test; ask an admin"
                    )
            before = policy_of(test.lockdown).public()
            test.lockdown = policy.model_dump()
            await ledger.record(
                s,
                await db_now(s),
                chain=f"test:{test.id}",
                type="lockdown_changed",
                source="staff",
                actor_id=principal.user_id,
                payload={"test_id": str(test.id), "before": before, "after": policy.public()},
            )
            seen = await seen_classes(s, principal)
            return await describe_test(s, test, principal, now=await db_now(s), seen=seen)

    async def list_tests(self, principal: Principal) -> list[TestOut]:
        """Staff: every test; a student: theirs, open now or upcoming (services/listing.py)."""
        async with self._db() as s, s.begin():
            return await visible_tests(s, principal)

    async def get(self, principal: Principal, test_id: uuid.UUID) -> TestOut:
        async with self._db() as s, s.begin():
            test = await s.get(Test, test_id)
            if test is None:
                raise NotFound("test", test_id)
            return await visible_test(s, principal, test)


async def add_test(
    s: AsyncSession,
    spec: TestIn,
    *,
    created_by: uuid.UUID,
    password_hash: str | None = None,
) -> Test:
    """Insert a test and its own items in the caller's transaction; refuse a blueprint the
    items available now cannot fill (422 blueprint_unsatisfiable). The caller checked that its
    author may assign it to `spec.assigned_to` (audience.require_assignable)."""
    now = await db_now(s)
    test = Test(
        title=spec.title,
        time_limit_seconds=spec.time_limit_seconds,
        navigation_mode=spec.navigation_mode,
        attempt_limit=spec.attempt_limit,
        allow_pause=spec.allow_pause,
        lockdown=spec.lockdown.model_dump(),
        blueprint=spec.blueprint.model_dump(mode="json") if spec.blueprint else None,
        policies=spec.policies.model_dump(mode="json"),
        assigned_to=[str(c) for c in spec.assigned_to],
        opens_at=spec.opens_at,
        closes_at=spec.closes_at,
        access_password_hash=password_hash,
        allowed_networks=list(spec.allowed_networks),
        created_by=created_by,
        created_at=now,
    )
    s.add(test)
    await s.flush()
    for position, item in enumerate(spec.items):
        s.add(version_row(item, test_id=test.id, position=position, version=1))
    await s.flush()
    if spec.blueprint is not None:
        if spec.blueprint.adaptive and spec.navigation_mode != "linear":
            raise Unprocessable(
                "adaptive_needs_linear",
                "a test with an adaptive section is linear: each answer decides the next item",
            )
        await check_blueprint(s, test.id, spec.blueprint)
    return test


async def blueprint_of(s: AsyncSession, test: Test) -> Blueprint:
    """The test's blueprint; a test without one is a single fixed section of its own items."""
    if test.blueprint is not None:
        return Blueprint.model_validate(test.blueprint)
    own = await s.scalars(
        select(Item.identifier).where(Item.test_id == test.id).order_by(Item.position)
    )
    return Blueprint(sections=[SectionDef(identifier="main", items=list(own))])


async def check_blueprint(s: AsyncSession, test_id: uuid.UUID, blueprint: Blueprint) -> None:
    """Draw one form now, adaptive first items included: a blueprint the bank cannot fill is
    refused when it is written, not when a candidate starts."""
    rows = await available_items(s, test_id, blueprint)
    candidates = {k: candidate_of(r) for k, r in rows.items()}
    seed = new_seed()
    try:
        form = assemble(blueprint, candidates, seed)
        begin(blueprint, form, candidates, calibrated(rows), seed)
    except AssemblyError as short:
        raise Unprocessable("blueprint_unsatisfiable", short.message, **short.details) from None
