"""Throttling guesses at a test's access password, shared by all workers.

The login throttle's pattern (live/throttle.py) on one bucket: each guess is counted before the
password is checked, by the same Lua step (`count_login.lua`), so concurrent guesses cannot
slip past the limit between a check and a count; the right password empties the bucket
(`refund_login.lua` with the one key). The bucket is one student at one test: the guesser is
signed in, so nobody else (a classmate behind the same school address) is slowed by them.
"""

from __future__ import annotations

import uuid

from delivery_service.live.keys import Keys
from delivery_service.live.scripts import Scripts


class PasswordGuesses:
    def __init__(
        self, keys: Keys, scripts: Scripts, *, max_failures: int, window_seconds: int
    ) -> None:
        self._keys = keys
        self._count = scripts.count_login
        self._clear = scripts.refund_login
        self.max_failures = max_failures
        self.window_seconds = window_seconds

    async def admit(self, test_id: uuid.UUID, user_id: uuid.UUID) -> float:
        """Count one guess; 0 when it may be checked, else the seconds to wait."""
        key = self._keys.access_password(str(test_id), str(user_id))
        wait_ms = await self._count(
            keys=[key], args=[self.window_seconds * 1000, self.max_failures]
        )
        return int(wait_ms) / 1000

    async def succeeded(self, test_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self._clear(keys=[self._keys.access_password(str(test_id), str(user_id))])
