"""Claims about the real PostgreSQL: durability of acknowledged writes, and the database clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from delivery_service.settings import Settings
from delivery_service.storage.database import (
    check_durability,
    create_engine,
    create_sessionmaker,
    db_now,
)


async def test_postgres_commits_are_synchronous(real_settings: Settings) -> None:
    engine = create_engine(real_settings)
    try:
        async with create_sessionmaker(engine)() as s:
            assert await check_durability(s) == "on"
    finally:
        await engine.dispose()


async def test_a_server_that_could_lose_acknowledged_commits_is_refused(
    real_settings: Settings,
) -> None:
    engine = create_engine(real_settings)
    try:
        async with create_sessionmaker(engine)() as s:
            await s.execute(text("SET synchronous_commit = off"))
            with pytest.raises(RuntimeError, match="synchronous_commit is 'off'"):
                await check_durability(s)
            await s.rollback()
    finally:
        await engine.dispose()


async def test_the_database_clock_is_utc_and_current(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as s:
            now = await db_now(s)
    finally:
        await engine.dispose()
    assert now.tzinfo is not None
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
