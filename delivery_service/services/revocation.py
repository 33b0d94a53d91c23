"""Whether a token still speaks for its user: the user exists, is not disabled, and the token
was issued under the user's current token version (raised when their password changes, their
tokens are revoked or they are disabled).

A signed token cannot be recalled, so every request checks it against the user's current state.
PostgreSQL holds that state; Redis keeps a copy per user for `ttl` seconds so the check costs one
GET, not a query. A change writes the database first, then overwrites the copy; a reader that
missed fills the copy only if it is still absent (SET NX), so a reader that read the database
just before a change cannot put the old state back over the new one. If writing the copy fails
(Redis down), the old copy lives at most `ttl` seconds; if reading it fails, the database
answers. Open sockets are re-checked every `ttl` seconds by the worker holding them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import NotFound
from delivery_service.domain.principal import Principal
from delivery_service.live.keys import Keys
from delivery_service.storage.models import User

log = logging.getLogger(__name__)

OFF = "off"  # the copy of a user who is disabled or does not exist
REDIS_RETRY_SECONDS = 5.0  # after a Redis failure, how long the check reads the database only


class Revocations:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        redis: Redis,
        keys: Keys,
        ttl_seconds: float,
    ) -> None:
        self._db = db
        self._redis = redis
        self._keys = keys
        self.ttl_seconds = ttl_seconds
        self._skip_redis_until = 0.0

    async def allows(self, principal: Principal) -> bool:
        versions = await self.current([principal.user_id])
        return versions.get(principal.user_id) == principal.token_version

    async def current(self, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int | None]:
        """Each user's current token version (None: disabled or unknown)."""
        wanted = list(dict.fromkeys(user_ids))
        if not wanted:
            return {}
        found: dict[uuid.UUID, int | None] = {}
        copies: list[bytes | str | None] = [None] * len(wanted)
        if time.monotonic() >= self._skip_redis_until:
            try:
                copies = await self._redis.mget([self._key(u) for u in wanted])
            except RedisError:
                # Read the database meanwhile, without waiting out Redis's timeout on every
                # request while it is down.
                self._skip_redis_until = time.monotonic() + REDIS_RETRY_SECONDS
                log.warning("token check: Redis unavailable, reading the database")
        for user_id, copy in zip(wanted, copies, strict=True):
            if copy is not None:
                found[user_id] = None if copy == OFF else int(copy)
        missing = [u for u in wanted if u not in found]
        if missing:
            found |= await self._read(missing)
        return found

    async def revoke(self, user_id: uuid.UUID, *, disable: bool | None = None) -> tuple[int, bool]:
        """End every token the user holds (REST at once, open sockets at their worker's next
        re-check), and with `disable` set or clear the account's disabled flag. Returns the
        new (token version, disabled)."""
        values: dict[str, Any] = {"token_version": User.token_version + 1}
        if disable is not None:
            values["disabled"] = disable
        async with self._db() as s, s.begin():
            found = (
                await s.execute(
                    update(User)
                    .where(User.id == user_id)
                    .values(values)
                    .returning(User.token_version, User.disabled)
                )
            ).one_or_none()
        if found is None:
            raise NotFound("user", user_id)
        version, disabled = found
        await self.changed(user_id, None if disabled else version)
        return version, disabled

    async def changed(self, user_id: uuid.UUID, version: int | None) -> None:
        """After the change committed: overwrite the copy (None: disabled or deleted)."""
        try:
            await self._redis.set(
                self._key(user_id), OFF if version is None else str(version),
                px=int(self.ttl_seconds * 1000),
            )  # fmt: skip
        except RedisError:
            log.warning("token check: could not update %s's copy; it expires in %ss",
                        user_id, self.ttl_seconds)  # fmt: skip

    async def _read(self, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, int | None]:
        async with self._db() as s:
            rows = await s.execute(
                select(User.id, User.token_version, User.disabled).where(User.id.in_(user_ids))
            )
            state = {ident: None if disabled else version for ident, version, disabled in rows}
        read = {u: state.get(u) for u in user_ids}
        if time.monotonic() < self._skip_redis_until:
            return read
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, version in read.items():
                    pipe.set(
                        self._key(user_id), OFF if version is None else str(version),
                        px=int(self.ttl_seconds * 1000), nx=True,
                    )  # fmt: skip
                await pipe.execute()
        except RedisError:
            self._skip_redis_until = time.monotonic() + REDIS_RETRY_SECONDS
        return read

    def _key(self, user_id: uuid.UUID) -> str:
        return self._keys.token_version(str(user_id))
