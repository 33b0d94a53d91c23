"""Deadline detection: our sweepers' sorted set beside Redis keyspace notifications, in one run.

    python -m bench.timers --deadlines 5000 --spread 60 --noise 100000 --sweepers 2

Writes `--noise` unrelated keys with a TTL, then `--deadlines` attempt timers whose deadlines
fall evenly over `--spread` seconds, each through `Timers.schedule` (the TTL key and the
deadline sorted set, exactly as a worker writes them; grace 0 so both methods aim at the same
moment). Then, side by side on the same Redis and the same keys:

- ours: `--sweepers` processes, each claiming due members with the production `claim_due`
  script every `--interval` seconds (the workers' default 0.5) and finishing each claim (ZREM,
  as `expire_due` does; the TTL key is left alone for the other method); lag = claimed at -
  deadline, and each member must be claimed exactly once;
- keyspace notifications: one subscriber to `__keyevent@DB__:expired` (notify-keyspace-events
  `Ex`, set for the run and restored after); lag = notified at - deadline, for the timer keys.

Prints p50/p95/p99/max lag of each and how many deadlines each saw. This is detection only:
what follows a claim (the database expiry and the "time's up" event) is in `bench.load expiry`.
Needs the real Redis (EXAMSERVER_REDIS_URL, default redis://127.0.0.1:6379/13, which it empties).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from bench.load import RESULTS, percentiles
from delivery_service.live.keys import Keys
from delivery_service.live.scripts import Scripts
from delivery_service.live.timers import Timers

PREFIX = "benchtimers:exam:v1"


def redis_url() -> str:
    return os.environ.get("EXAMSERVER_REDIS_URL", "redis://127.0.0.1:6379/13")


async def prepare(url: str, deadlines: int, spread: float, noise: int, lead: float) -> float:
    """Empty the bench database, write the noise and the timers; the first deadline's time."""
    redis = Redis.from_url(url, decode_responses=True)
    await redis.flushdb()
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(noise):
            pipe.set(f"noise:{n}", "x", px=random.randint(30_000, 7_200_000))
            if n % 5000 == 4999:
                await pipe.execute()
        await pipe.execute()
    timers = Timers(redis, Keys(PREFIX), Scripts.register(redis), timedelta(0))
    start = time.time() + lead
    now = datetime.now(UTC)
    for n in range(deadlines):
        at = datetime.fromtimestamp(start + spread * n / deadlines, UTC)
        await timers.schedule(f"attempt-{n:06d}", at, now)
    await redis.aclose()
    return start


def sweeper_process(url: str, until: float, interval: float, out: Any) -> None:
    out.put(asyncio.run(_sweep(url, until, interval)))


async def _sweep(url: str, until: float, interval: float) -> list[tuple[str, float]]:
    """One worker's sweeper loop, without the database: claim, then finish the claim (ZREM).
    The TTL key is left to expire on its own so that the notifications can see it."""
    redis = Redis.from_url(url, decode_responses=True)
    keys = Keys(PREFIX)
    timers = Timers(redis, keys, Scripts.register(redis), timedelta(0))
    claimed: list[tuple[str, float]] = []
    while time.time() < until:
        now = datetime.now(UTC)
        for member in await timers.claim_due(now, timedelta(seconds=30)):
            claimed.append((member, time.time()))
            await redis.zrem(keys.deadlines, member)
        await asyncio.sleep(interval)
    await redis.aclose()
    return claimed


async def notifications(url: str, until: float, ready: asyncio.Event) -> dict[str, float]:
    redis = Redis.from_url(url, decode_responses=True)
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    previous = (await redis.config_get("notify-keyspace-events")).get("notify-keyspace-events", "")
    await redis.config_set("notify-keyspace-events", "Ex")
    seen: dict[str, float] = {}
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"__keyevent@{db}__:expired")
    ready.set()
    marker = f"{PREFIX}:timer:{{a:"
    try:
        while time.time() < until:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is None:
                continue
            key = message["data"]
            if key.startswith(marker):
                seen.setdefault(key[len(marker) : -1], time.time())
    finally:
        await pubsub.aclose()
        await redis.config_set("notify-keyspace-events", previous)
        await redis.aclose()
    return seen


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = redis_url()
    t = time.perf_counter()
    start = await prepare(url, args.deadlines, args.spread, args.noise, args.lead)
    print(f"wrote {args.noise} noise keys and {args.deadlines} timers in "
          f"{time.perf_counter() - t:.1f} s", flush=True)  # fmt: skip
    due = {f"attempt-{n:06d}": start + args.spread * n / args.deadlines
           for n in range(args.deadlines)}  # fmt: skip
    until = start + args.spread + args.tail
    ready = asyncio.Event()
    listening = asyncio.create_task(notifications(url, until, ready))
    await ready.wait()
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    procs = [context.Process(target=sweeper_process, args=(url, until, args.interval, out))
             for _ in range(args.sweepers)]  # fmt: skip
    for p in procs:
        p.start()
    claims = [c for _ in procs for c in await asyncio.to_thread(out.get)]
    for p in procs:
        p.join()
    notified = await listening
    counts: dict[str, int] = {}
    for member, _ in claims:
        counts[member] = counts.get(member, 0) + 1
    ours = percentiles([at - due[m] for m, at in claims])
    theirs = percentiles([at - due[m] for m, at in notified.items() if m in due])
    result = {
        "scenario": "timers",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.timers " + " ".join(args.argv),
        "deadlines": args.deadlines,
        "spread_s": args.spread,
        "noise_keys": args.noise,
        "sweepers": args.sweepers,
        "sweep_interval_s": args.interval,
        "sorted_set_sweepers": {
            "lag": ours,
            "seen": len(counts),
            "claimed_twice": sum(1 for n in counts.values() if n > 1),
            "never": args.deadlines - len(counts),
        },
        "keyspace_notifications": {
            "lag": theirs,
            "seen": len(notified),
            "never": args.deadlines - len(notified),
        },
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.timers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--deadlines", type=int, default=5000)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds the deadlines span")
    parser.add_argument("--noise", type=int, default=100_000, help="unrelated keys with a TTL")
    parser.add_argument("--sweepers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between sweeps")
    parser.add_argument("--lead", type=float, default=5.0, help="seconds before the first")
    parser.add_argument("--tail", type=float, default=20.0, help="seconds to wait after the last")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"timers-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
