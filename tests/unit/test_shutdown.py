"""A worker's shutdown steps are bounded even when a step does not heed cancellation."""

from __future__ import annotations

import asyncio
import time

from delivery_service.runtime import _bounded


async def test_a_step_that_ignores_cancellation_is_left_after_its_bound() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # as a driver's thread would: the cancellation is not heeded

    started = time.monotonic()
    await _bounded("stubborn", stubborn(), seconds=0.2)
    assert time.monotonic() - started < 1.0
    release.set()
    await asyncio.sleep(0)
