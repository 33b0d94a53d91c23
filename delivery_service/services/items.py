"""Item contents by row id, cached in-process.

Item rows are immutable once written (an edit makes a new row; attempts keep pointing at the rows
they delivered), so a cache can never serve stale content. It saves a query on the answer path.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.storage.models import Item
from test_assembly.interactions import ItemContent


class ItemCache:
    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, ItemContent] = OrderedDict()

    async def many(self, s: AsyncSession, item_ids: list[str]) -> list[ItemContent]:
        missing = [i for i in item_ids if i not in self._items]
        if missing:
            # Core rows, not ORM entities: nothing here is written back.
            items = Item.__table__
            wanted = items.c.id.in_([uuid.UUID(i) for i in missing])
            rows = await s.execute(select(items).where(wanted))
            for row in rows:
                self._put(
                    ItemContent(
                        item_id=str(row.id),
                        identifier=row.identifier,
                        type=row.type,
                        body=row.body,
                        scoring=row.scoring,
                    )
                )
        found = []
        for i in item_ids:
            item = self._items.get(i)
            if item is None:
                raise LookupError(f"item {i} of a stored form does not exist")
            self._items.move_to_end(i)
            found.append(item)
        return found

    def _put(self, item: ItemContent) -> None:
        self._items[item.item_id] = item
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
