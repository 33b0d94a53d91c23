from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.embedded import Served, running_server
from delivery_service.settings import Settings
from tests.support import HOMEROOM, Api, add_class, add_user, sample_test


@dataclass
class World:
    served: Served
    teacher: Api
    student: Api
    other: Api
    admin: Api
    teacher2: Api
    sessions: async_sessionmaker[AsyncSession]
    settings: Settings

    @property
    def base_url(self) -> str:
        return self.served.url

    async def new_test(self, **overrides: object) -> str:
        created = await self.teacher.post("/tests", sample_test(**overrides), expect=201)
        return str(created["id"])

    async def started_attempt(self, **overrides: object) -> str:
        test_id = await self.new_test(**overrides)
        attempt = await self.student.post("/attempts", {"test_id": test_id}, expect=201)
        await self.student.post(f"/attempts/{attempt['id']}/start")
        return str(attempt["id"])


@pytest.fixture
def server_settings(settings: Settings) -> Settings:
    """Override in a module to change settings for its server."""
    return settings


@pytest.fixture
async def world(
    server_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[World]:
    teacher = await add_user(sessions, "teacher", "teacher")
    await add_user(sessions, "teacher2", "teacher")
    await add_user(sessions, "admin", "admin")
    students = [await add_user(sessions, f"student{n}") for n in (1, 2, 3)]
    # The teacher's own class: staff see and act on the attempts of the classes they teach
    # (teacher2 teaches none of these students).
    await add_class(sessions, HOMEROOM, teachers=[teacher], students=students)
    async with running_server(server_settings) as served:
        apis = [
            await Api.login(served.url, name)
            for name in ("teacher", "student1", "student2", "admin", "teacher2")
        ]
        try:
            yield World(served, *apis, sessions=sessions, settings=server_settings)
        finally:
            for api in apis:
                await api.close()
