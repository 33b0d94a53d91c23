"""A token bucket per socket: a burst is fine, a sustained flood is not. The caller passes
the clock (the edges pass `time.monotonic`), as everywhere in the domain."""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
