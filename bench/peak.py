"""Peak: raise the answer rate step by step until p99 acknowledgement latency passes a limit.

    python -m bench.peak --candidates 1000 --start 50 --factor 1.25 --step 20 --limit-ms 250

The same world as `bench.load steady` (candidates in proctored sessions, proctors watching,
through nginx to `examserver cluster`). Each step offers `rate` answers per second in all
(every candidate answers every candidates/rate seconds, with think time: the rate changes under
running candidates, it does not restart them), for `--step` seconds; the p99 of the
acknowledgements received in that step decides whether the next step runs at `rate * factor`.
Prints each step and the highest rate whose p99 stayed within the limit; afterwards every answer
is checked against the database, as in the other scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bench import load
from delivery_service.cluster import LocalCluster


async def peak(
    world: load.World, cluster: LocalCluster, args: argparse.Namespace
) -> dict[str, Any]:
    base = f"ws://127.0.0.1:{cluster.port}"
    stop = asyncio.Event()
    candidates, proctors, tasks = await load.connect_all(world, base, stop, args.connect_rate)
    await load.start_sessions(world, base, candidates)
    steps: list[dict[str, Any]] = []
    rate = [args.start]  # answers per second in all, changed by each step
    halt = asyncio.Event()

    async def pause(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(halt.wait(), seconds)

    async def answering(c: load.Candidate) -> None:
        """One candidate, answering with think time around the current step's interval, until
        the halt (noticed between answers: cancelled mid-send, an answer recorded as sent could
        go unsent and read as a missing acknowledgement)."""
        await pause(random.uniform(0, len(candidates) / rate[0]))
        while not halt.is_set():
            await c.answer()
            await pause(random.uniform(0.5, 1.5) * len(candidates) / rate[0])

    running = [asyncio.create_task(answering(c)) for c in candidates]
    await asyncio.sleep(len(candidates) / rate[0])  # every candidate has started
    while len(steps) < args.max_steps:
        marks = [len(c.latencies) for c in candidates]
        began = time.perf_counter()
        await asyncio.sleep(args.step)
        elapsed = time.perf_counter() - began
        got = [x for c, m in zip(candidates, marks, strict=True) for x in c.latencies[m:]]
        ms = np.asarray(got) * 1000
        p99 = float(np.percentile(ms, 99)) if got else float("inf")
        steps.append({
            "offered_per_s": round(rate[0], 1),
            "acked_per_s": round(len(got) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if got else None,
            "p99_ms": round(p99, 1),
        })  # fmt: skip
        print(f"  step {json.dumps(steps[-1])}", flush=True)
        if p99 > args.limit_ms:
            break
        rate[0] *= args.factor
    halt.set()
    await asyncio.gather(*running)
    await load.settle(candidates)
    within = [s for s in steps if s["p99_ms"] <= args.limit_ms]
    result = load.summary(candidates, proctors, sum(args.step for _ in steps))
    stop.set()
    for t in tasks:
        t.cancel()
    result["database"] = await load.verify(world.settings, candidates)
    result["steps"] = steps
    result["limit_ms"] = args.limit_ms
    result["peak_acked_per_s_within_limit"] = max((s["acked_per_s"] for s in within), default=None)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--proctors", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--start", type=float, default=50.0, help="answers per second, first step")
    parser.add_argument("--factor", type=float, default=1.25)
    parser.add_argument("--step", type=float, default=20.0, help="seconds per step")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--limit-ms", type=float, default=250.0)
    parser.add_argument("--connect-rate", type=float, default=400.0)
    args = parser.parse_args()
    # The shared driver runs a scenario by name; peak is this module's.
    load.SCENARIOS["peak"] = peak
    args.scenario, args.interval, args.duration, args.attempts = "peak", None, None, 0
    args.argv = sys.argv[1:]
    load.tune_harness_gc()
    result = asyncio.run(load.main(args))
    result["command"] = "python -m bench.peak " + " ".join(args.argv)
    print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=2))
    load.RESULTS.mkdir(exist_ok=True)
    path = load.RESULTS / f"peak-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
