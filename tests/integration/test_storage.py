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


async def test_a_concurrent_change_to_an_attempt_is_detected_by_its_version(
    real_settings: Settings,
) -> None:
    """PostgreSQL only: the embedded SQLite pool has one connection, so sessions never overlap."""
    import uuid

    from sqlalchemy.orm.exc import StaleDataError

    from delivery_service.storage.models import Attempt, Test, User

    engine = create_engine(real_settings)
    sessions = create_sessionmaker(engine)
    now = datetime.now(UTC)
    try:
        async with sessions() as s, s.begin():
            user = User(
                username="v", display_name="V", password_hash="x", role="student", created_at=now
            )
            s.add(user)
            await s.flush()
            test = Test(
                title="t",
                time_limit_seconds=60,
                navigation_mode="linear",
                attempt_limit=1,
                allow_pause=True,
                created_by=user.id,
                created_at=now,
            )
            s.add(test)
            await s.flush()
            attempt = Attempt(
                test_id=test.id, user_id=user.id, attempt_number=1, form=[], created_at=now
            )
            s.add(attempt)
        attempt_id: uuid.UUID = attempt.id
        async with sessions() as stale:
            mine = await stale.get(Attempt, attempt_id)
            assert mine is not None
            async with sessions() as other, other.begin():
                theirs = await other.get(Attempt, attempt_id)
                assert theirs is not None
                theirs.position = 1
            mine.position = 2
            with pytest.raises(StaleDataError):
                await stale.commit()
    finally:
        await engine.dispose()
