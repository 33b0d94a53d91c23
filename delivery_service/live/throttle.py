"""Login throttling that slows a guesser without locking their victim out of an exam.

Every attempt is counted before its password is checked (one Lua step, so 200 concurrent
guesses get exactly the limit checked), in buckets shared by all workers:

- `account`: one username from one client address (`max_failures` per window): a guesser at
  one address gets a handful of tries at one account;
- `source`: one client address across usernames (`max_per_address`): a sprayer trying one
  password on many accounts;
- `device`: instead of both, for a browser that proves it signed in as this user before (a
  signed device cookie): a guesser elsewhere, even behind the same school address, cannot use
  up the candidate's own tries.

No bucket is per username alone, so nobody can lock a candidate out from somewhere else. A
successful sign-in empties its account (or device) bucket and gives its count back to the
source, so a school's hundreds of candidates behind one address spend only their typos.
"""

from __future__ import annotations

from dataclasses import dataclass

from delivery_service.live.keys import Keys
from delivery_service.live.scripts import Scripts


@dataclass(frozen=True)
class Attempt:
    """Which buckets one login attempt counts in."""

    username: str
    source: str
    device: str | None = None  # a verified device cookie's id for this username

    def buckets(self, keys: Keys) -> list[tuple[str, str]]:
        """(kind, key) pairs, the account (or device) bucket first."""
        if self.device is not None:
            return [("device", keys.login_device(self.device))]
        return [
            ("account", keys.login_account(self.username, self.source)),
            ("source", keys.login_source(self.source)),
        ]


class LoginThrottle:
    def __init__(
        self,
        keys: Keys,
        scripts: Scripts,
        *,
        max_failures: int,
        max_per_address: int,
        window_seconds: int,
    ) -> None:
        self._keys = keys
        self._count = scripts.count_login
        self._refund = scripts.refund_login
        self._limits = {
            "account": max_failures,
            "device": max_failures,
            "source": max_per_address,
        }
        self.window_seconds = window_seconds

    async def admit(self, attempt: Attempt) -> float:
        """Count the attempt; 0 when it may go ahead, else the seconds to wait."""
        buckets = attempt.buckets(self._keys)
        wait_ms = await self._count(
            keys=[key for _, key in buckets],
            args=[self.window_seconds * 1000, *(self._limits[kind] for kind, _ in buckets)],
        )
        return int(wait_ms) / 1000

    async def succeeded(self, attempt: Attempt) -> None:
        """Empty its account (or device) bucket and give its count back to the source."""
        keys = [key for _, key in attempt.buckets(self._keys)]
        await self._refund(keys=keys)
