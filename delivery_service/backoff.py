"""How long a background loop waits before trying again after a failure.

The loops that must recover by themselves (the expiry sweeper, the pub/sub listener) wait a
little after the first failure, twice as long after each further one up to a cap, and start
over after a success: a backend that is down is not hammered, one that comes back is found
again within the cap. One policy, so both loops recover the same way.
"""

from __future__ import annotations


class Backoff:
    def __init__(self, first: float, cap: float) -> None:
        if first <= 0 or cap < first:
            raise ValueError(f"backoff needs 0 < first <= cap, got first={first}, cap={cap}")
        self._first = first
        self._cap = cap
        self._next = first

    def failed(self) -> float:
        """The delay to wait now; the next failure waits twice as long (up to the cap)."""
        delay = self._next
        self._next = min(delay * 2, self._cap)
        return delay

    def succeeded(self) -> None:
        self._next = self._first
