"""How late the worker's event loop runs, and how long the garbage collector stops it.

One worker serves every socket on one thread: anything that holds the loop (a long synchronous
step, a full collection of a large heap) delays every candidate's acknowledgement at once. The
answer-save histogram shows that the tail is long; these two say whether the loop was the cause.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from delivery_service.metrics import Metrics


def tune_gc(thresholds: tuple[int, int, int]) -> None:
    """A worker's collector settings, applied once before it serves. Everything alive now
    (modules, the app, mappers, models) is frozen out of future collections, and collections run
    less often: a full collection walks every tracked object, and with thousands of sockets that
    stopped the loop for 0.25-1 s at a time (docs/performance.md, 2026-12-02). Reference
    counting still frees nearly everything at once; only cyclic garbage waits longer."""
    gc.set_threshold(*thresholds)
    gc.freeze()


async def watch_loop(observe: Callable[[float], None], interval: float = 0.25) -> None:
    """Sleep `interval` again and again and pass on how much later than asked the loop woke
    (a worker to its lag histogram, the bench harness to its own list)."""
    while True:
        asked = time.perf_counter() + interval
        await asyncio.sleep(interval)
        observe(max(time.perf_counter() - asked, 0.0))


class GcWatch:
    """Times each collection by generation through `gc.callbacks` (process-wide: install once
    per runtime, remove on stop)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self._metrics.gc_pause.labels(str(info.get("generation", "?"))).observe(pause)

    def install(self) -> None:
        gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
