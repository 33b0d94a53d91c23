"""This worker's open sockets, and the gates a new one passes before it costs anything.

Nothing here speaks HTTP: the registry holds whatever can be closed and re-checked (the WebSocket
edge's connections, see api/ws/lifecycle.py), so the runtime builds it without importing the edge.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Protocol

from delivery_service.domain.token_bucket import TokenBucket


class Holder(Protocol):
    """Whose sign-in opened a socket: what the token re-check compares."""

    @property
    def user_id(self) -> uuid.UUID: ...

    @property
    def token_version(self) -> int: ...


class OpenSocket(Protocol):
    """What the registry and the runtime need of an open socket: close it when the worker
    drains, re-check its user's tokens and close it when they were revoked."""

    @property
    def principal(self) -> Holder | None: ...

    @property
    def who(self) -> Holder: ...

    def revoke(self) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    async def closed(self) -> None: ...


class SocketRegistry:
    """This worker's open sockets, so a draining worker can tell each to reconnect elsewhere."""

    def __init__(
        self,
        *,
        accept_rate: float = 200.0,
        accept_burst: int = 400,
        greetings: int = 16,
        greeting_wait: float = 30.0,
    ) -> None:
        self._open: set[OpenSocket] = set()
        # DESIGN §6: a reconnect storm must not starve the sockets already open. Joining costs
        # database and Redis work; past this rate a newcomer is told to come back (1013) before
        # any of it is done, and its backoff with jitter spreads the storm out.
        self._accepts = TokenBucket(rate=accept_rate, burst=accept_burst, clock=time.monotonic)
        # And however fast they arrive, only so many are greeted at once (their admission
        # check, join and snapshot read the database): the rest wait for a slot in arrival
        # order (a parked coroutine costs little; a refusal costs a whole new handshake), and
        # only after `greeting_wait` are told to come back. So answers from the sockets already
        # open still find a database connection instead of queueing behind a crowd of greetings.
        self._greetings = asyncio.Semaphore(greetings)
        self._greeting_wait = greeting_wait

    def admit(self) -> bool:
        return self._accepts.take()

    async def greeting(self) -> Callable[[], None] | None:
        """A greeting slot's release (safe to call twice), or None when none came free."""
        try:
            await asyncio.wait_for(self._greetings.acquire(), self._greeting_wait)
        except TimeoutError:
            return None
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._greetings.release()

        return release

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[OpenSocket]:
        return iter(list(self._open))

    def add(self, connection: OpenSocket) -> None:
        self._open.add(connection)

    def discard(self, connection: OpenSocket) -> None:
        self._open.discard(connection)

    async def close_all(self, *, code: int, reason: str) -> None:
        for connection in list(self._open):
            connection.close(code, reason)
        for connection in list(self._open):
            await connection.closed()
