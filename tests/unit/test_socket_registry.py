"""The worker's socket registry: the accept rate, the greeting slots, closing every socket."""

import asyncio
import uuid
from dataclasses import dataclass, field

from delivery_service.live.sockets import SocketRegistry


@dataclass(frozen=True)
class Signed:
    user_id: uuid.UUID
    token_version: int = 0


@dataclass(eq=False)
class FakeSocket:
    principal: Signed | None = None
    closed_with: tuple[int, str] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def who(self) -> Signed:
        assert self.principal is not None
        return self.principal

    def revoke(self) -> None:
        self.close(4401, "token revoked")

    def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)
        self.done.set()

    async def closed(self) -> None:
        await self.done.wait()


def test_newcomers_past_the_burst_are_refused() -> None:
    registry = SocketRegistry(accept_rate=0.001, accept_burst=3)
    assert [registry.admit() for _ in range(4)] == [True, True, True, False]


async def test_a_greeting_slot_is_released_once_however_often_release_is_called() -> None:
    registry = SocketRegistry(greetings=1, greeting_wait=0.05)
    release = await registry.greeting()
    assert release is not None
    assert await registry.greeting() is None  # the only slot is taken: the newcomer gives up
    release()
    release()  # a second call must not free a slot nobody holds
    again = await registry.greeting()
    assert again is not None
    assert await registry.greeting() is None


async def test_close_all_closes_every_open_socket_and_waits_for_each() -> None:
    registry = SocketRegistry()
    sockets = [FakeSocket(principal=Signed(uuid.uuid4())) for _ in range(3)]
    for socket in sockets:
        registry.add(socket)
    registry.discard(sockets[2])
    assert len(registry) == 2
    await asyncio.wait_for(registry.close_all(code=1012, reason="restarting"), timeout=1)
    assert [s.closed_with for s in sockets] == [(1012, "restarting")] * 2 + [None]
    assert set(registry) == set(sockets[:2])  # closing is the socket's to report, not ours
