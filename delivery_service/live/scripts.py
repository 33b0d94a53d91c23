"""The Lua scripts, kept as files and registered once per Redis client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

SCRIPTS = Path(__file__).with_name("scripts")


@dataclass(frozen=True)
class Scripts:
    publish: AsyncScript
    claim_due: AsyncScript
    refresh_owner: AsyncScript
    release_owner: AsyncScript
    count_login: AsyncScript
    refund_login: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        def load(name: str) -> AsyncScript:
            return redis.register_script((SCRIPTS / f"{name}.lua").read_text())

        return cls(
            publish=load("publish"),
            claim_due=load("claim_due"),
            refresh_owner=load("refresh_owner"),
            release_owner=load("release_owner"),
            count_login=load("count_login"),
            refund_login=load("refund_login"),
        )
