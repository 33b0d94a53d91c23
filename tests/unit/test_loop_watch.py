"""The loop-lag and GC-pause metrics see what holds a worker's event loop."""

from __future__ import annotations

import asyncio
import gc
import time

from delivery_service.loop_watch import GcWatch, tune_gc, watch_loop
from delivery_service.metrics import Metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


async def test_a_blocked_loop_is_measured_as_lag() -> None:
    metrics = Metrics()
    watcher = asyncio.create_task(watch_loop(metrics.loop_lag.observe, interval=0.02))
    try:
        await asyncio.sleep(0.1)
        calm = sample(metrics, "examserver_event_loop_lag_seconds_sum")
        time.sleep(0.3)  # a synchronous step holding the loop
        await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
    assert sample(metrics, "examserver_event_loop_lag_seconds_count") >= 3
    assert calm < 0.1
    assert sample(metrics, "examserver_event_loop_lag_seconds_sum") - calm >= 0.25
    assert sample(metrics, "examserver_event_loop_lag_seconds_bucket", le="0.25") < sample(
        metrics, "examserver_event_loop_lag_seconds_count"
    )


def test_full_collections_are_timed_until_the_watch_is_removed() -> None:
    metrics = Metrics()
    watch = GcWatch(metrics)
    watch.install()
    try:
        gc.collect()
        gc.collect()
    finally:
        watch.remove()
    assert sample(metrics, "examserver_gc_pause_seconds_count", generation="2") == 2
    assert sample(metrics, "examserver_gc_pause_seconds_sum", generation="2") > 0
    gc.collect()
    assert sample(metrics, "examserver_gc_pause_seconds_count", generation="2") == 2
    assert watch not in gc.callbacks


def test_a_worker_freezes_its_start_up_heap_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc((50_000, 20, 100))
        assert gc.get_threshold() == (50_000, 20, 100)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
