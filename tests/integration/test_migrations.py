"""Data migrations on both databases: rows written by an older revision read right after."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from delivery_service.storage.migrate import upgrade
from tests.services import own_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own (the suite's shared schema is always at head)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    with own_postgres_database("migration") as url:
        yield url


def run(url: str, *statements: str) -> list[tuple[object, ...]]:
    async def go() -> list[tuple[object, ...]]:
        engine = create_async_engine(url, poolclass=NullPool)
        rows: list[tuple[object, ...]] = []
        async with engine.begin() as conn:
            for sql in statements:
                result = await conn.execute(text(sql))
                if result.returns_rows:
                    rows = [tuple(r) for r in result]
        await engine.dispose()
        return rows

    return asyncio.run(go())


def test_0007_turns_a_stored_json_null_answer_into_sql_null(empty_database: str) -> None:
    """Before 0007 a cleared answer was the JSON value null, which SQL counted as answered."""
    upgrade(empty_database, "0006")
    pg = empty_database.startswith("postgresql")
    # Foreign keys are not the point here: item states without their attempt rows.
    no_fk = "SET session_replication_role = replica" if pg else "PRAGMA foreign_keys = OFF"
    insert = ("INSERT INTO item_states (attempt_id, item_id, response, flagged, locked, "
              "needs_grade) VALUES ('{a}', '{i}', {v}, false, false, false)")  # fmt: skip
    attempt = uuid.uuid4()
    values = {"cleared": "'null'", "answered": "'[\"B\"]'", "never": "NULL"}
    ids = {name: uuid.uuid4() for name in values}
    uid = (lambda u: str(u)) if pg else (lambda u: u.hex)
    run(empty_database, no_fk, *(insert.format(a=uid(attempt), i=uid(ids[n]), v=v)
                                 for n, v in values.items()))  # fmt: skip
    before = run(empty_database, "SELECT count(*) FROM item_states WHERE response IS NOT NULL")
    assert before == [(2,)]
    upgrade(empty_database)
    after = run(empty_database, "SELECT item_id FROM item_states WHERE response IS NOT NULL")
    assert [str(uuid.UUID(str(i))) for (i,) in after] == [str(ids["answered"])]
