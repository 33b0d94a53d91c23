"""Memory per idle connection: worker RSS as idle session sockets pile up.

    python -m bench.idle --sockets 10000 --step 2000

Seeds `--sockets` candidates in waiting rooms (five sessions), starts `examserver cluster`
(2 workers) and opens their session WebSockets straight to the workers, alternating (nginx is
not what is measured), each authenticated and sending heartbeats every 15 s like the app. After
each `--step` sockets it waits until every one has its state, lets the workers settle, and
reads each worker's resident memory (VmRSS). Prints the table and the slope from the first step
to the last: KiB of process memory per idle connection.

Needs PostgreSQL, Redis and nginx as `bench.load` does, and an open-file limit above the socket
count (`ulimit -n`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.load import RESULTS, Candidate, seeded_cluster, tune_harness_gc


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    world, cluster = await seeded_cluster("idle", workers=2, candidates=args.sockets, proctors=5)
    ports = list(cluster.processes)
    pids = [cluster.processes[p].pid for p in ports]
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    rows: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(2)
        rows.append({"sockets": 0, "rss_kib": [rss_kib(p) for p in pids]})
        print(json.dumps(rows[-1]), flush=True)
        candidates = [
            Candidate(who, sid, world.tokens.issue(who), f"ws://127.0.0.1:{ports[n % 2]}")
            for n, (who, sid) in enumerate(world.candidates)
        ]
        for start in range(0, len(candidates), args.step):
            began = time.perf_counter()
            batch = candidates[start : start + args.step]
            for n, c in enumerate(batch):
                tasks.append(asyncio.create_task(c.live(stop)))
                if n % 100 == 99:
                    await asyncio.sleep(100 / args.connect_rate)
            async with asyncio.timeout(600):
                await asyncio.gather(*(c.synced.wait() for c in batch))
            opened = time.perf_counter() - began
            await asyncio.sleep(args.settle)
            rows.append({
                "sockets": start + len(batch),
                "rss_kib": [rss_kib(p) for p in pids],
                "connect_s": round(opened, 1),
                "reconnects": sum(c.reconnects for c in candidates),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.to_thread(cluster.stop)
    first, last = rows[1], rows[-1]
    per_worker = np.asarray([r["sockets"] / 2 for r in rows[1:]])
    rss = np.asarray([sum(r["rss_kib"]) / 2 for r in rows[1:]])
    slope = float(np.polyfit(per_worker, rss, 1)[0]) if len(rows) > 2 else None
    return {
        "scenario": "idle",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.idle " + " ".join(sys.argv[1:]),
        "workers": 2,
        "steps": rows,
        "kib_per_idle_connection": round(slope, 1) if slope is not None else None,
        "from_to": [first["sockets"], last["sockets"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.idle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=2000)
    parser.add_argument("--connect-rate", type=float, default=300.0, help="new sockets per second")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each reading")
    args = parser.parse_args()
    tune_harness_gc()
    result = asyncio.run(run(args))
    print(json.dumps({k: v for k, v in result.items() if k != "steps"}, indent=2))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"idle-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
