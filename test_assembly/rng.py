"""Reproducible randomness from a secret seed.

Forms must be unpredictable to candidates (a guessable shuffle leaks the exam) and exactly
rebuildable by an auditor from what the attempt stored. So the seed comes from `secrets`, and
every draw is HMAC-SHA256(seed, label || counter): as unpredictable as the seed, and the same
draws for the same seed on every machine and Python version (unlike `random.Random`, whose
algorithms are not promised to stay put). Each use gets its own label, so drawing one more item
in one section never changes the order of another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

SEED_BYTES = 32


def new_seed() -> str:
    """A fresh seed as 64 hex characters, from the operating system's secure source."""
    return secrets.token_hex(SEED_BYTES)


class Stream:
    """A deterministic stream of unbiased draws, one per (seed, label)."""

    def __init__(self, seed: str, label: str) -> None:
        self._key = bytes.fromhex(seed)
        if len(self._key) < 16:
            raise ValueError("a seed has at least 16 bytes")
        self._label = label.encode()
        self._counter = 0
        self._buffer = b""

    def _bytes(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = hmac.new(
                self._key,
                self._label + b"\x00" + self._counter.to_bytes(8, "big"),
                hashlib.sha256,
            ).digest()
            self._counter += 1
            self._buffer += block
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def below(self, n: int) -> int:
        """A uniform integer in [0, n), by rejection so no value is favoured."""
        if n <= 0:
            raise ValueError("n must be positive")
        if n == 1:
            return 0
        bits = (n - 1).bit_length()
        size = (bits + 7) // 8
        mask = (1 << bits) - 1
        while True:
            value = int.from_bytes(self._bytes(size), "big") & mask
            if value < n:
                return value

    def uniform(self) -> float:
        """A float in [0, 1) with 53 random bits."""
        return (int.from_bytes(self._bytes(7), "big") >> 3) / float(1 << 53)

    def shuffled(self, values: Sequence[T]) -> list[T]:
        """Fisher-Yates: every permutation equally likely."""
        out = list(values)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def sample(self, values: Sequence[T], k: int) -> list[T]:
        """k distinct values, every k-subset (and every order of it) equally likely."""
        if k > len(values):
            raise ValueError(f"cannot draw {k} from {len(values)}")
        pool = list(values)
        for i in range(k):
            j = i + self.below(len(pool) - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]
