"""Helpers shared by the integration and cluster tests: data set-up and small clients."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import websockets
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.security.passwords import hash_password
from delivery_service.storage.models import Class, ClassStudent, ClassTeacher, User

TEST_SECRET = "test-secret-for-the-examserver-suite-0123456789"
PASSWORD = "correct horse battery staple"
HASH_COST = 2**8


HOMEROOM = "Homeroom"
# The fixtures' class of every test student: a fixed id, so `sample_test` can assign its tests
# to it (a student takes a test self-paced only when it is assigned to one of their classes).
HOMEROOM_ID = uuid.UUID("00000000-0000-4000-8000-00000000c1a5")
FOR_HOMEROOM = {"assigned_to": [str(HOMEROOM_ID)]}


def sample_test(**overrides: Any) -> dict[str, Any]:
    """A four-question test, assigned to the fixtures' Homeroom class (override `assigned_to`
    for another audience, or `[]` for staff only)."""
    spec: dict[str, Any] = {
        **FOR_HOMEROOM,
        "title": "Integration test",
        "time_limit_seconds": 600,
        "navigation_mode": "nonlinear",
        "attempt_limit": 2,
        "items": [
            {
                "identifier": f"q{n}",
                "type": "choice",
                "prompt": f"Question {n}?",
                "choices": [{"identifier": c, "text": f"Answer {c}"} for c in "ABCD"],
                "correct": ["B"] if n != 3 else ["A", "C"],
                "points": 1,
            }
            for n in range(1, 5)
        ],
    }
    spec.update(overrides)
    return spec


async def add_user(
    sessions: async_sessionmaker[AsyncSession], username: str, role: str = "student"
) -> uuid.UUID:
    async with sessions() as s, s.begin():
        user = User(
            username=username,
            display_name=username.title(),
            password_hash=hash_password(PASSWORD, cost=HASH_COST),
            role=role,
            created_at=datetime.now(UTC),
        )
        s.add(user)
        await s.flush()
        return user.id


async def add_class(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    *,
    teachers: list[uuid.UUID],
    students: list[uuid.UUID],
) -> uuid.UUID:
    """A class; the one named `HOMEROOM` gets `HOMEROOM_ID` (what `sample_test` assigns)."""
    async with sessions() as s, s.begin():
        now = datetime.now(UTC)
        klass = Class(
            id=HOMEROOM_ID if name == HOMEROOM else uuid.uuid4(),
            name=name,
            state="active",
            created_by=teachers[0],
            created_at=now,
        )
        s.add(klass)
        await s.flush()
        s.add_all(ClassTeacher(class_id=klass.id, user_id=t) for t in teachers)
        s.add_all(ClassStudent(class_id=klass.id, user_id=u, enrolled_at=now) for u in students)
        return klass.id


class Api:
    """A logged-in REST client."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        self.http = httpx.AsyncClient(
            base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=20
        )

    @classmethod
    async def login(cls, base_url: str, username: str, password: str = PASSWORD) -> Api:
        async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
            reply = await http.post(
                "/api/v1/auth/login", json={"username": username, "password": password}
            )
        reply.raise_for_status()
        return cls(base_url, reply.json()["access_token"])

    async def close(self) -> None:
        await self.http.aclose()

    async def post(self, path: str, body: Any = None, expect: int | None = 200) -> Any:
        reply = await self.http.post(path, json=body)
        if expect is not None:
            assert reply.status_code == expect, reply.text
        return reply.json()

    async def patch(self, path: str, body: Any = None, expect: int | None = 200) -> Any:
        reply = await self.http.patch(path, json=body)
        if expect is not None:
            assert reply.status_code == expect, reply.text
        return reply.json()

    async def put(self, path: str, body: Any = None, expect: int | None = 200) -> Any:
        reply = await self.http.put(path, json=body)
        if expect is not None:
            assert reply.status_code == expect, reply.text
        return reply.json()

    async def get(self, path: str, expect: int | None = 200) -> Any:
        reply = await self.http.get(path)
        if expect is not None:
            assert reply.status_code == expect, reply.text
        return reply.json()

    async def ticket(self, attempt_id: str | None = None) -> str:
        body = {"attempt_id": attempt_id} if attempt_id else None
        return str((await self.post("/ws-tickets", body, expect=201))["ticket"])

    def ws_url(self, attempt_id: str, **query: str) -> str:
        base = self.base_url.replace("http://", "ws://")
        suffix = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{base}/api/v1/attempts/{attempt_id}/ws" + (f"?{suffix}" if suffix else "")


class Socket:
    """A WebSocket client that reads messages by type and remembers everything it saw."""

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self.connection = connection
        self.seen: list[dict[str, Any]] = []
        self._counter = 0

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, **kwargs: Any) -> AsyncIterator[Socket]:
        async with websockets.connect(url, open_timeout=10, **kwargs) as connection:
            yield cls(connection)

    async def send(self, type_: str, data: dict[str, Any] | None = None) -> str:
        self._counter += 1
        msg_id = f"m{self._counter}"
        await self.connection.send(json.dumps({"type": type_, "id": msg_id, "data": data or {}}))
        return msg_id

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        message = json.loads(await asyncio.wait_for(self.connection.recv(), timeout))
        self.seen.append(message)
        return dict(message)

    async def until(self, type_: str, timeout: float = 10, re: str | None = None) -> dict[str, Any]:
        """The next message of `type_` (answering `re`, if given), skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive(timeout)
                if message["type"] == type_ and (re is None or message.get("re") == re):
                    return message

    async def request(self, type_: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send and return the reply (an `error` reply included)."""
        msg_id = await self.send(type_, data)
        async with asyncio.timeout(10):
            while True:
                message = await self.receive()
                if message.get("re") == msg_id:
                    return message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
