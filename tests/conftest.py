"""Fixtures: settings per backend, a clean database per test, a Redis prefix per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from delivery_service.settings import Settings
from delivery_service.storage.database import create_engine, create_sessionmaker
from delivery_service.storage.migrate import upgrade
from tests.services import PG_URL, REDIS_URL, postgres_problem, redis_problem, require
from tests.support import HASH_COST, TEST_SECRET

TABLES = (
    "ledger_events, ledger_heads, session_participants, sessions, class_students, "
    "class_teachers, classes, response_history, item_states, attempts, items, tests, users"
)


def make_settings(database_url: str, redis_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "redis_prefix": f"t{uuid.uuid4().hex[:10]}:exam:v1",
        "jwt_secret": TEST_SECRET,
        "password_hash_cost": HASH_COST,
        "sweep_interval_seconds": 0.1,
        "grace_ms": 500,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def postgres_schema() -> str:
    """Migrate a fresh schema once per run, with the real migrations."""
    require(postgres_problem())

    async def reset() -> None:
        engine = create_async_engine(PG_URL, poolclass=NullPool)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(reset())
    upgrade(PG_URL)
    return PG_URL


@pytest.fixture
def pg_url(postgres_schema: str) -> str:
    async def truncate() -> None:
        engine = create_async_engine(postgres_schema, poolclass=NullPool)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
        await engine.dispose()

    asyncio.run(truncate())
    return postgres_schema


@pytest.fixture
def redis_url() -> str:
    require(redis_problem())
    return REDIS_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'exam.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["embedded", "real"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The same suite over both deployments: SQLite + in-process Redis, and PostgreSQL + Redis."""
    if request.param == "embedded":
        return make_settings(request.getfixturevalue("sqlite_url"), "memory://")
    return make_settings(request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url"))


@pytest.fixture
def real_settings(pg_url: str, redis_url: str) -> Settings:
    return make_settings(pg_url, redis_url)


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()
