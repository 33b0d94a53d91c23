"""What one reconnect costs a worker: CPU, database transactions and Redis commands per greeting.

    python -m bench.greeting --candidates 400 --rounds 3 [--socket attempt]

The reconnect storm's figure (`bench.load storm`) is a whole cluster's wall time, with answers
arriving, two workers, nginx and the harness sharing two cores, and it varies by ±20 s from run to
run. This measures the thing a storm multiplies: seeds `--candidates` candidates in one running
session (each with an attempt), starts one worker (no nginx: the worker is what is measured),
connects everyone, then `--rounds` times every candidate drops at once and comes back resuming
with `last_event_id`, like a storm. Around each round it reads the worker's CPU time (/proc),
PostgreSQL's transactions (pg_stat_database) and Redis's processed commands (INFO), minus what the
same connected crowd costs over an idle stretch of the same length, and prints them per greeting
(a greeting here is one socket closing and its successor's admission, join, subscriptions,
replay, greeting and state sync).

Needs PostgreSQL and Redis as `bench.load` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import websockets
from redis.asyncio import Redis

from bench.load import RESULTS, Candidate, seeded_cluster, start_sessions, tune_harness_gc
from bench.procstat import cpu_seconds
from bench.seeding import choice_test


@dataclass
class Counters:
    at: float
    cpu: float
    transactions: int
    redis_commands: int

    def minus(self, other: Counters) -> Counters:
        return Counters(
            self.at - other.at,
            self.cpu - other.cpu,
            self.transactions - other.transactions,
            self.redis_commands - other.redis_commands,
        )


class Probe:
    """Reads the three counters; PostgreSQL's are flushed by idle backends within a second, so
    each reading waits that out first."""

    def __init__(self, pid: int, database_url: str, redis_url: str) -> None:
        self.pid = pid
        self._dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        self._name = self._dsn.rpartition("/")[2]
        self._redis = Redis.from_url(redis_url)

    async def read(self) -> Counters:
        await asyncio.sleep(1.5)
        connection = await asyncpg.connect(self._dsn)
        try:
            transactions = await connection.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                self._name,
            )
        finally:
            await connection.close()
        info = await self._redis.info("stats")
        return Counters(
            time.perf_counter(),
            cpu_seconds([self.pid]),
            int(transactions) - 1,  # this reading's own
            int(info["total_commands_processed"]) - 1,  # INFO itself
        )

    async def close(self) -> None:
        await self._redis.aclose()


@dataclass
class SelfPaced:
    """A candidate on the attempt socket of a running self-paced attempt: reconnects as the app
    does and resumes from the latest position it saw (`auth_success.data.last_event_id`, then
    each event's `seq`)."""

    token: str
    url: str
    position: str = ""
    recovered: bool | None = None
    ws: Any = None
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    async def live(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            query = f"?last_event_id={self.position}" if self.position else ""
            try:
                async with websockets.connect(self.url + query, open_timeout=30) as ws:
                    self.ws = ws
                    await ws.send(json.dumps({"type": "auth", "data": {"token": self.token}}))
                    async for raw in ws:
                        self._read(json.loads(raw))
            except (websockets.WebSocketException, OSError, TimeoutError):
                pass
            self.ws = None
            if not stop.is_set():
                await asyncio.sleep(random.uniform(0, 0.4))

    def _read(self, message: dict[str, Any]) -> None:
        if message["type"] == "auth_success":
            self.recovered = message["data"].get("recovered")
            self.position = message["data"]["last_event_id"]  # at or after any missed event
        elif message.get("seq") and _offset(message["seq"]) > _offset(self.position):
            self.position = message["seq"]
        elif message["type"] == "attempt_state":
            self.synced.set()


def _offset(position: str) -> int:
    return int(position.rpartition(":")[2] or 0)


async def self_paced(world: Any, port: int) -> list[SelfPaced]:
    """A self-paced test, and a started attempt of it for every candidate."""
    proctor, _ = world.proctors[0]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=60) as http:
        staff = {"Authorization": f"Bearer {world.tokens.issue(proctor)}"}
        body = choice_test("Self-paced bench").model_dump(mode="json")
        # Assigned to the proctor's class (every candidate's: one proctor), so they may take it.
        classes = (await http.get("/classes", headers=staff)).raise_for_status().json()
        body["assigned_to"] = [c["id"] for c in classes]
        test = (await http.post("/tests", json=body, headers=staff)).raise_for_status().json()
        people = []
        for who, _ in world.candidates:
            token = world.tokens.issue(who)
            auth = {"Authorization": f"Bearer {token}"}
            made = await http.post("/attempts", json={"test_id": test["id"]}, headers=auth)
            attempt = made.raise_for_status().json()["id"]
            (await http.post(f"/attempts/{attempt}/start", headers=auth)).raise_for_status()
            url = f"ws://127.0.0.1:{port}/api/v1/attempts/{attempt}/ws"
            people.append(SelfPaced(token, url))
    return people


async def storm_round(candidates: list[Candidate] | list[SelfPaced]) -> float:
    """Everyone drops at once (concurrently: a loop of awaited closes would spread the drop over
    seconds); seconds until every one is back and has its state."""
    began = time.perf_counter()
    for c in candidates:
        c.synced.clear()
        c.recovered = None
    await asyncio.gather(*(c.ws.close() for c in candidates if c.ws is not None))
    async with asyncio.timeout(600):
        await asyncio.gather(*(c.synced.wait() for c in candidates))
    return time.perf_counter() - began


def per_greeting(delta: Counters, idle: Counters, n: int) -> dict[str, float]:
    scale = delta.at / idle.at  # the idle crowd's cost over the round's length
    return {
        "cpu_ms": round(1000 * (delta.cpu - idle.cpu * scale) / n, 2),
        "transactions": round((delta.transactions - idle.transactions * scale) / n, 2),
        "redis_commands": round((delta.redis_commands - idle.redis_commands * scale) / n, 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    world, cluster = await seeded_cluster(
        "greeting", workers=1, candidates=args.candidates, proctors=1
    )
    (port,) = cluster.processes
    probe = Probe(cluster.processes[port].pid, *_urls(world))
    stop = asyncio.Event()
    base = f"ws://127.0.0.1:{port}"
    candidates: list[Candidate] | list[SelfPaced]
    if args.socket == "attempt":
        candidates = await self_paced(world, port)
    else:
        candidates = [
            Candidate(who, sid, world.tokens.issue(who), base) for who, sid in world.candidates
        ]
    tasks = [asyncio.create_task(c.live(stop)) for c in candidates]
    rounds: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(300):
            await asyncio.gather(*(c.synced.wait() for c in candidates))
        if args.socket == "session":
            await start_sessions(world, base, candidates)  # type: ignore[arg-type]
        before = await probe.read()
        await asyncio.sleep(args.idle)
        idle = (await probe.read()).minus(before)
        for n in range(args.rounds):
            before = await probe.read()
            seconds = storm_round(candidates)
            took = await seconds
            delta = (await probe.read()).minus(before)
            row = {
                "round": n + 1,
                "all_back_s": round(took, 2),
                "recovered": sum(1 for c in candidates if c.recovered is True),
                **per_greeting(delta, idle, len(candidates)),
            }
            rounds.append(row)
            print(json.dumps(row), flush=True)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await probe.close()
        await asyncio.to_thread(cluster.stop)
    best = min(rounds, key=lambda r: r["cpu_ms"])
    return {
        "scenario": "greeting",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "command": "python -m bench.greeting " + " ".join(sys.argv[1:]),
        "candidates": args.candidates,
        "socket": args.socket,
        "idle_worker_cpu_per_s": round(idle.cpu / idle.at, 3),
        "rounds": rounds,
        "median_cpu_ms": sorted(r["cpu_ms"] for r in rounds)[len(rounds) // 2],
        "best": best,
    }


def _urls(world: Any) -> tuple[str, str]:
    settings = world.settings
    return settings.database_url, settings.redis_url


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.greeting",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--candidates", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--socket",
        choices=["session", "attempt"],
        default="session",
        help="a proctored session's socket, or a self-paced attempt's",
    )
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle baseline")
    args = parser.parse_args()
    tune_harness_gc()
    result = asyncio.run(run(args))
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"greeting-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
