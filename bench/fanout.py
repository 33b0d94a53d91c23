"""Fan-out: how many delivered messages per second at p99 <= 200 ms, beside python-socketio.

    python -m bench.fanout --candidates 2000 --proctors 20 --workers 2

One workload, two servers, one run, one machine: `--proctors` rooms of candidates plus one proctor
each, every socket through the same nginx (deploy/nginx.conf) to `--workers` workers sharing one
Redis. The proctors broadcast notices to their rooms at a rate raised step by step (`--start`
notices per second in all, times `--factor` each step of `--step` seconds); every socket in the
room should get each one. A delivery's latency runs from the moment the proctor sends (here, in
this process) to the moment the socket has it, so it holds everything on the way.

- ours: candidates on the session socket of a proctored session in its waiting room; a proctor
  sends a notice with `POST /api/v1/sessions/{id}/notices` (stored and audited, then published
  on the session's channel: pub/sub plus its Redis stream);
- baseline: bench/socketio_app.py, python-socketio with AsyncRedisManager (the same payload
  emitted to a room; nothing stored), driven over the raw Engine.IO 4 protocol by the same
  `websockets` client, so both sides pay the same client cost.

With `--engine-only` both sides publish from this process the way their own servers do once they
have decided to (ours: the bus's Lua script, appending to the channel's stream and publishing;
the baseline: an external `AsyncRedisManager(write_only=True)`'s `emit`), so the two fan-out
engines are compared without our notice's durable, audited write (an HTTP request here too).

Each step reports deliveries per second, p50/p99 latency, and deliveries missing or duplicated
(counted after a pause that lets the step drain). The figure of a server is the best delivered
rate among steps whose p99 stayed within `--limit-ms` with nothing missing; the ratio of ours to
the baseline's is printed and written to bench/results/fanout-<time>.json, with a plot of both
curves when matplotlib is installed (`uv run --group bench …`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import socketio  # type: ignore[import-untyped]
import websockets

from bench import load
from bench.procstat import cpu_seconds
from delivery_service.cluster import LocalCluster, free_port
from delivery_service.live.bus import Bus
from delivery_service.live.connection import create_redis
from delivery_service.live.keys import Keys, session_channel
from delivery_service.live.scripts import Scripts

Publish = Callable[[int, str], Coroutine[Any, Any, None]]  # (room, message id)


@dataclass
class Receiver:
    """One socket in a room: when each notice arrived, and how often."""

    room: int
    sent: dict[str, float]  # message id -> when the proctor sent it (shared)
    latency: dict[str, float] = field(default_factory=dict)
    copies: Counter[str] = field(default_factory=Counter)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ws: Any = None
    reconnects: int = 0

    def got(self, message_id: str) -> None:
        now = time.perf_counter()
        self.copies[message_id] += 1
        if message_id in self.sent and message_id not in self.latency:
            self.latency[message_id] = now - self.sent[message_id]


async def connect_all(
    receivers: list[Receiver],
    runs: list[Coroutine[Any, Any, None]],
    tasks: list[asyncio.Task[None]],
    connect_rate: float,
) -> None:
    """Open every socket at a civil rate, then wait until each is in its room."""
    for n, run in enumerate(runs):
        tasks.append(asyncio.create_task(run))
        if n % 50 == 49:
            await asyncio.sleep(50 / connect_rate)
    async with asyncio.timeout(300):
        await asyncio.gather(*(r.ready.wait() for r in receivers))


async def shut_down(stop: asyncio.Event, tasks: list[asyncio.Task[None]], cluster: Any) -> None:
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(cluster.stop)


# ---- ours ----


async def ours_receiver(url: str, token: str, me: Receiver, stop: asyncio.Event) -> None:
    """Stay connected, as the apps do: a refused or dropped socket comes back after a pause
    and resumes by `last_event_id`, so a reconnect loses no notice."""
    positions: dict[str, str] = {}
    while not stop.is_set():
        query = "?last_event_id=" + ",".join(positions.values()) if positions else ""
        try:
            async with websockets.connect(url + query, open_timeout=60, max_size=None) as ws:
                me.ws = ws
                await ws.send(json.dumps({"type": "auth", "data": {"token": token}}))
                beating = asyncio.create_task(heartbeat(ws))
                try:
                    async for raw in ws:
                        message = json.loads(raw)
                        if message.get("seq"):
                            positions[message["seq"].split(":", 1)[0]] = message["seq"]
                        if message["type"] == "notice":
                            me.got(message["data"]["message"])
                        elif message["type"] == "connected":
                            for kind, seq in message["data"].get("positions", {}).items():
                                positions.setdefault(kind, seq)
                        elif message["type"] == "state_sync_response":
                            me.ready.set()
                finally:
                    beating.cancel()
        except (websockets.WebSocketException, OSError, TimeoutError):
            pass
        if not stop.is_set():
            me.reconnects += 1
            await asyncio.sleep(random.uniform(0.5, 2.0))


async def heartbeat(ws: Any) -> None:
    """Every 15 s (the server closes a socket silent for 45 s), from a random phase: sockets
    opened in the same few seconds would otherwise beat in step, which browsers do not."""
    await asyncio.sleep(random.uniform(0, 15))
    while True:
        await ws.send('{"type": "heartbeat", "data": {}}')
        await asyncio.sleep(15)


@contextlib.asynccontextmanager
async def ours(args: argparse.Namespace, sent: dict[str, float]) -> Any:
    """Our cluster with the world seeded: yields (receivers, publish, pids)."""
    world, cluster = await load.seeded_cluster(
        "fanout", workers=args.workers, candidates=args.candidates, proctors=args.proctors
    )
    port = cluster.port
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        rooms = {sid: n for n, sid in enumerate(world.sessions)}
        base = f"ws://127.0.0.1:{port}/api/v1/sessions"
        people = [*world.proctors, *world.candidates]
        receivers = [Receiver(rooms[sid], sent) for _, sid in people]
        await connect_all(
            receivers,
            [
                ours_receiver(f"{base}/{sid}/ws", world.tokens.issue(who), me, stop)
                for (who, sid), me in zip(people, receivers, strict=True)
            ],
            tasks,
            args.connect_rate,
        )
        if args.engine_only:
            async with bus_publisher(world, sent) as publish_on_bus:
                yield receivers, publish_on_bus, [*cluster.processes.values(), cluster.nginx]
            return
        headers = [{"Authorization": f"Bearer {world.tokens.issue(p)}"} for p, _ in world.proctors]
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
        ) as http:

            async def publish(room: int, message_id: str) -> None:
                sent[message_id] = time.perf_counter()
                reply = await http.post(
                    f"/api/v1/sessions/{world.sessions[room]}/notices",
                    json={"message": message_id},
                    headers=headers[room],
                )
                if reply.status_code != 201:
                    print(f"  notice refused: {reply.status_code} {reply.text}", flush=True)

            yield receivers, publish, [*cluster.processes.values(), cluster.nginx]
    finally:
        await shut_down(stop, tasks, cluster)


@contextlib.asynccontextmanager
async def bus_publisher(world: load.World, sent: dict[str, float]) -> Any:
    """Publish a notice the way the server does after its commit: the same Bus, script and keys
    (the workers' prefix), from this process."""
    settings = world.settings
    redis = create_redis(settings.redis_url)
    bus = Bus(redis, Keys(settings.redis_prefix), Scripts.register(redis),
              maxlen=settings.stream_maxlen, ttl_seconds=settings.stream_ttl_seconds)  # fmt: skip
    try:

        async def publish(room: int, message_id: str) -> None:
            sent[message_id] = time.perf_counter()
            data = {"message": message_id, "from": f"proctor{room}", "student_id": None,
                    "at": datetime.now(UTC).isoformat()}  # fmt: skip
            await bus.publish(session_channel(world.sessions[room]), "notice", data)

        yield publish
    finally:
        await redis.aclose()


# ---- python-socketio ----


async def socketio_receiver(url: str, me: Receiver, stop: asyncio.Event) -> None:
    """Engine.IO 4 over a WebSocket: `0` open, `40` connect, `42[...]` events, `2`/`3` ping.
    A dropped socket reconnects and joins again; what it missed meanwhile is lost (counted)."""
    while not stop.is_set():
        try:
            async with websockets.connect(url, open_timeout=60, max_size=None) as ws:
                me.ws = ws
                await ws.recv()  # 0{"sid": …, "pingInterval": …}
                await ws.send("40")
                await ws.recv()  # 40{"sid": …}
                await ws.send(f'420["join", "room-{me.room}"]')
                async for raw in ws:
                    if raw == "2":
                        await ws.send("3")
                    elif isinstance(raw, str) and raw.startswith("42"):
                        name, data = json.loads(raw[2:])
                        if name == "notice":
                            me.got(data["message"])
                    elif isinstance(raw, str) and raw.startswith("430"):
                        me.ready.set()  # the server acknowledged the join
        except (websockets.WebSocketException, OSError, TimeoutError):
            pass
        if not stop.is_set():
            me.reconnects += 1
            await asyncio.sleep(random.uniform(0.5, 2.0))


@contextlib.asynccontextmanager
async def socketio_baseline(args: argparse.Namespace, sent: dict[str, float]) -> Any:
    _, redis = load.bench_databases()
    port = free_port()
    channel = f"bench-socketio-{secrets.token_hex(3)}"
    cluster = LocalCluster(
        workers=args.workers,
        port=port,
        prefix=Path(tempfile.mkdtemp(prefix="socketio-fanout-")),
        env=os.environ | {"BENCH_REDIS_URL": redis, "BENCH_SOCKETIO_CHANNEL": channel},
        worker=[
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.socketio_app:create_app",
            "--port",
            "{port}",
            "--no-access-log",
            "--log-level",
            "warning",
            "--ws-per-message-deflate",
            "false",
        ],  # fmt: skip
    )
    await asyncio.to_thread(cluster.start)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        url = f"ws://127.0.0.1:{port}/api/v1/socket.io/?EIO=4&transport=websocket"
        rooms = [n % args.proctors for n in range(args.candidates)]
        proctors = [Receiver(n, sent) for n in range(args.proctors)]
        receivers = [*proctors, *(Receiver(room, sent) for room in rooms)]
        await connect_all(
            receivers,
            [socketio_receiver(url, me, stop) for me in receivers],
            tasks,
            args.connect_rate,
        )

        # The engine-only publisher: what socketio documents for emitting from outside a server.
        external = socketio.AsyncRedisManager(redis, channel=channel, write_only=True)

        async def publish(room: int, message_id: str) -> None:
            sent[message_id] = time.perf_counter()
            payload = {
                "room": f"room-{room}",
                "message": message_id,
                "from": f"proctor{room}",
                "student_id": None,
            }
            if args.engine_only:
                payload["at"] = datetime.now(UTC).isoformat()
                await external.emit("notice", payload, room=f"room-{room}", namespace="/")
            else:
                await proctors[room].ws.send("42" + json.dumps(["notice", payload]))

        yield receivers, publish, [*cluster.processes.values(), cluster.nginx]
    finally:
        await shut_down(stop, tasks, cluster)


# ---- the ramp ----


async def ramp(
    name: str,
    receivers: list[Receiver],
    publish: Publish,
    pids: list[Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    members = Counter(r.room for r in receivers)
    ids = itertools.count()
    steps: list[dict[str, Any]] = []
    rate = args.start
    failed_at: float | None = None
    pending: set[asyncio.Task[None]] = set()
    while len(steps) < args.max_steps:
        step_ids: list[str] = []
        cpu, began = cpu_seconds(p.pid for p in pids), time.perf_counter()
        tick = 1 / rate
        n = 0
        while (due := began + n * tick) < began + args.step:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            k = next(ids)
            message_id = f"{name}-{k}"
            step_ids.append(message_id)
            task = asyncio.create_task(publish(k % args.proctors, message_id))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        elapsed = time.perf_counter() - began
        await asyncio.sleep(args.drain)
        cpu = cpu_seconds(p.pid for p in pids) - cpu
        rooms = {m: int(m.rsplit("-", 1)[1]) % args.proctors for m in step_ids}
        wanted = set(step_ids)
        latencies = [x for r in receivers for m, x in r.latency.items() if m in wanted]
        ms = np.asarray(latencies) * 1000
        # Not there by the end of the drain: late (counted in the final tally if it comes) or lost.
        missing = sum(members[rooms[m]] for m in step_ids) - len(latencies)
        step = {
            "notices_per_s": round(len(step_ids) / elapsed, 1),
            "delivered_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
            "not_yet_delivered": missing,
            "server_cpu_s_per_1k_deliveries": round(1000 * cpu / len(latencies), 3)
            if latencies
            else None,
        }
        steps.append(step)
        print(f"  {name} step {json.dumps(step)}", flush=True)
        over = step["p99_ms"] is None or step["p99_ms"] > args.limit_ms
        if over and failed_at != rate:
            failed_at = rate  # one stall is not a limit: the same rate once more
            continue
        if over:
            break
        rate *= args.factor
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.sleep(args.settle)
    sent = [f"{name}-{n}" for n in range(next(ids))]
    good = [
        s
        for s in steps
        if s["p99_ms"] is not None and s["p99_ms"] <= args.limit_ms and not s["not_yet_delivered"]
    ]
    return {
        "steps": steps,
        "delivered_per_s_within_limit": max((s["delivered_per_s"] for s in good), default=None),
        "sockets": len(receivers),
        "notices": len(sent),
        # After everything had --settle seconds more: what never came, and what came twice.
        "lost": sum(
            1
            for r in receivers
            for n, m in enumerate(sent)
            if n % args.proctors == r.room and m not in r.copies
        ),
        "duplicated": sum(c - 1 for r in receivers for c in r.copies.values() if c > 1),
        "reconnects": sum(r.reconnects for r in receivers),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    servers = {"ours": ours, "socketio": socketio_baseline}
    result: dict[str, Any] = {
        "scenario": "fanout",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "workers": args.workers,
        "candidates": args.candidates,
        "proctors": args.proctors,
        "limit_ms": args.limit_ms,
        "engine_only": args.engine_only,
        "command": "python -m bench.fanout " + " ".join(sys.argv[1:]),
    }
    for name in args.servers:
        print(f"{name}:", flush=True)
        sent: dict[str, float] = {}
        async with servers[name](args, sent) as (receivers, publish, pids):
            await asyncio.sleep(args.warmup)  # the joins' own events have passed
            result[name] = await ramp(name, receivers, publish, pids, args)
    if "ours" in result and "socketio" in result:
        a = result["ours"]["delivered_per_s_within_limit"]
        b = result["socketio"]["delivered_per_s_within_limit"]
        result["ratio_ours_to_socketio"] = round(a / b, 2) if a and b else None
    return result


def plot(result: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ("ours", "socketio"):
        steps = [s for s in result.get(name, {}).get("steps", []) if s["p99_ms"] is not None]
        if steps:
            ax.plot(
                [s["delivered_per_s"] for s in steps],
                [s["p99_ms"] for s in steps],
                marker="o",
                label="examserver" if name == "ours" else "python-socketio + AsyncRedisManager",
            )
    ax.axhline(result["limit_ms"], color="grey", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("delivered messages per second")
    ax.set_ylabel("p99 delivery latency (ms)")
    ax.set_title(
        f"fan-out: {result['candidates']} candidates, {result['proctors']} proctors, "
        f"{result['workers']} workers"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument("--proctors", type=int, default=20, help="rooms, one proctor each")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--start", type=float, default=5.0, help="notices per second, first step")
    parser.add_argument("--factor", type=float, default=1.5)
    parser.add_argument("--step", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds after each step")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the ramp")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before the tally")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--limit-ms", type=float, default=200.0)
    parser.add_argument("--connect-rate", type=float, default=400.0)
    parser.add_argument(
        "--servers", nargs="+", choices=["ours", "socketio"], default=["ours", "socketio"]
    )
    parser.add_argument(
        "--engine-only",
        action="store_true",
        help="publish from the harness as each server does after deciding (no notice route)",
    )
    args = parser.parse_args()
    load.tune_harness_gc()
    result = asyncio.run(run(args))
    load.RESULTS.mkdir(exist_ok=True)
    out = load.RESULTS / f"fanout-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2))
    png = plot(result, out.with_suffix(".png"))
    print(json.dumps(result, indent=2))
    print(f"written: {out}" + (f" and {png}" if png else ""))


if __name__ == "__main__":
    main()
