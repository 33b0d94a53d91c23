"""The item bank: items under stable identifiers, each edit a new immutable version.

Attempts pin the version rows they delivered (their `form` holds row ids), so an edit or a
retirement never changes an exam already handed out. Every change is staff work on the record:
it goes into the item's ledger chain with who did it (and why, when given).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Conflict, Forbidden, NotFound
from delivery_service.domain.principal import Principal
from delivery_service.read_models.tests import BankItemOut
from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import Ledger
from delivery_service.storage.models import BankItem, Item
from integrity import chain as sealing
from test_assembly.assembly import Candidate
from test_assembly.interactions import ItemContent
from test_assembly.model import Blueprint, ItemDefinition


def item_chain(bank_item_id: uuid.UUID) -> str:
    return f"item:{bank_item_id}"


def definition_of(row: Item) -> ItemDefinition:
    return ItemDefinition.from_parts(
        identifier=row.identifier,
        type=row.type,
        body=row.body,
        scoring=row.scoring,
        tags=row.tags or [],
        irt=row.irt,
    )


def version_row(definition: ItemDefinition, **where: Any) -> Item:
    return Item(
        identifier=definition.identifier,
        type=definition.type,
        body=definition.body(),
        scoring=definition.scoring(),
        tags=list(definition.tags),
        irt=definition.irt.model_dump() if definition.irt else None,
        **where,
    )


def candidate_of(row: Item) -> Candidate:
    choices = tuple(c["identifier"] for c in row.body.get("choices") or [])
    return Candidate(
        identifier=row.identifier,
        tags=frozenset(row.tags or []),
        choices=choices,
        shuffle=bool(row.body.get("shuffle")),
    )


def content_of(row: Item) -> ItemContent:
    return ItemContent(str(row.id), row.identifier, row.type, row.body, row.scoring)


def _out(bank: BankItem, row: Item) -> BankItemOut:
    return BankItemOut(
        id=bank.id,
        identifier=bank.identifier,
        state=bank.state,
        version=row.version,
        version_id=row.id,
        created_at=bank.created_at,
        updated_at=bank.updated_at,
        item=definition_of(row),
    )


def _require_author(principal: Principal) -> None:
    if not principal.is_staff:
        raise Forbidden("only teachers and admins manage the item bank")


async def save_to_bank(
    s: AsyncSession,
    definition: ItemDefinition,
    *,
    actor: uuid.UUID,
    now: datetime,
    ledger: Ledger,
    reason: str | None = None,
    create_only: bool = False,
) -> tuple[BankItem, Item, str]:
    """Add an item, or a new version of the item with that identifier (unchanged content adds
    nothing). Returns (bank item, current version row, "created" | "updated" | "unchanged")."""
    bank = await s.scalar(
        select(BankItem).where(BankItem.identifier == definition.identifier).with_for_update()
    )
    if bank is not None and create_only:
        raise Conflict(
            "item_exists",
            f"the bank already holds {definition.identifier}; edit it instead",
            identifier=definition.identifier,
        )
    if bank is not None:
        current = await s.get(Item, bank.current_item_id)
        if current is not None and definition_of(current) == definition and bank.state == "active":
            return bank, current, "unchanged"
    outcome = "created" if bank is None else "updated"
    if bank is None:
        bank = BankItem(
            id=uuid.uuid4(),
            identifier=definition.identifier,
            state="active",
            version=1,
            current_item_id=uuid.uuid4(),
            created_by=actor,
            created_at=now,
        )
        s.add(bank)
        await s.flush()
    else:
        bank.version += 1
        bank.state = "active"
        bank.updated_at = now
    row = version_row(definition, bank_item_id=bank.id, version=bank.version, position=0)
    row.id = uuid.uuid4()
    s.add(row)
    bank.current_item_id = row.id
    await s.flush()
    await ledger.record(
        s,
        now,
        chain=item_chain(bank.id),
        type=f"item_{outcome}",
        source="staff",
        actor_id=actor,
        payload={
            "identifier": bank.identifier,
            "version": bank.version,
            "version_id": str(row.id),
            "content_sha256": sealing.digest(definition.model_dump(mode="json")),
        },
        reason=reason,
    )
    return bank, row, outcome


class ItemBankService:
    def __init__(self, *, db: async_sessionmaker[AsyncSession], ledger: Ledger) -> None:
        self._db = db
        self._ledger = ledger

    async def create(self, principal: Principal, definition: ItemDefinition) -> BankItemOut:
        _require_author(principal)
        try:
            async with self._db() as s, s.begin():
                bank, row, _ = await save_to_bank(
                    s,
                    definition,
                    actor=principal.user_id,
                    now=await db_now(s),
                    ledger=self._ledger,
                    create_only=True,
                )
                return _out(bank, row)
        except IntegrityError:  # a concurrent create of the same identifier
            raise Conflict(
                "item_exists", f"the bank already holds {definition.identifier}"
            ) from None

    async def update(
        self,
        principal: Principal,
        identifier: str,
        definition: ItemDefinition,
        *,
        reason: str | None = None,
    ) -> BankItemOut:
        _require_author(principal)
        if definition.identifier != identifier:
            raise Conflict(
                "identifier_mismatch",
                "an item's identifier cannot change; create a new item instead",
                identifier=identifier,
            )
        async with self._db() as s, s.begin():
            if await s.scalar(select(BankItem.id).where(BankItem.identifier == identifier)) is None:
                raise NotFound("item", identifier)
            bank, row, _ = await save_to_bank(
                s,
                definition,
                actor=principal.user_id,
                now=await db_now(s),
                ledger=self._ledger,
                reason=reason,
            )
            return _out(bank, row)

    async def retire(
        self, principal: Principal, identifier: str, *, reason: str | None = None
    ) -> BankItemOut:
        """Out of new forms from now on; attempts that have it keep it."""
        _require_author(principal)
        async with self._db() as s, s.begin():
            bank = await s.scalar(
                select(BankItem).where(BankItem.identifier == identifier).with_for_update()
            )
            if bank is None:
                raise NotFound("item", identifier)
            now = await db_now(s)
            if bank.state != "retired":
                bank.state = "retired"
                bank.updated_at = now
                await self._ledger.record(
                    s,
                    now,
                    chain=item_chain(bank.id),
                    type="item_retired",
                    source="staff",
                    actor_id=principal.user_id,
                    payload={"identifier": identifier, "version": bank.version},
                    reason=reason,
                )
            row = await s.get(Item, bank.current_item_id)
            assert row is not None
            return _out(bank, row)

    async def get(
        self, principal: Principal, identifier: str, *, version: int | None = None
    ) -> BankItemOut:
        _require_author(principal)
        async with self._db() as s:
            bank = await s.scalar(select(BankItem).where(BankItem.identifier == identifier))
            if bank is None:
                raise NotFound("item", identifier)
            if version is None:
                row = await s.get(Item, bank.current_item_id)
            else:
                row = await s.scalar(
                    select(Item).where(Item.bank_item_id == bank.id, Item.version == version)
                )
            if row is None:
                raise NotFound("item_version", f"{identifier}@{version}")
            return _out(bank, row)

    async def list_items(
        self,
        principal: Principal,
        *,
        tags: list[str] | None = None,
        state: str | None = "active",
        type_: str | None = None,
    ) -> list[BankItemOut]:
        """Tags filter in Python: JSON containment differs between PostgreSQL and SQLite, and a
        bank listing is an authoring action, not a hot path."""
        _require_author(principal)
        stmt = (
            select(BankItem, Item)
            .join(Item, Item.id == BankItem.current_item_id)
            .order_by(BankItem.identifier)
        )
        if state is not None:
            stmt = stmt.where(BankItem.state == state)
        if type_ is not None:
            stmt = stmt.where(Item.type == type_)
        wanted = set(tags or [])
        async with self._db() as s:
            rows = await s.execute(stmt)
            return [_out(b, i) for b, i in rows if wanted <= set(i.tags or [])]


async def available_items(
    s: AsyncSession, test_id: uuid.UUID, blueprint: Blueprint
) -> dict[str, Item]:
    """What a test's blueprint may draw from: the bank's active items (current versions) and
    the test's own items, which win a name clash (they were written for this test). A
    blueprint that draws nothing by tag needs only the bank items it names."""
    stmt = (
        select(Item)
        .join(BankItem, BankItem.current_item_id == Item.id)
        .where(BankItem.state == "active")
    )
    if not blueprint.draws_by_tag:
        stmt = stmt.where(BankItem.identifier.in_(blueprint.referenced()))
    rows = await s.scalars(stmt)
    found = {row.identifier: row for row in rows}
    own = await s.scalars(select(Item).where(Item.test_id == test_id).order_by(Item.position))
    found.update({row.identifier: row for row in own})
    return found
