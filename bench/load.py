"""Load harness: simulated candidates and proctors over the real protocol, through nginx, against
`examserver cluster` (N workers, one PostgreSQL, one Redis).

    python -m bench.load steady --candidates 2000 --proctors 5 --duration 300
    python -m bench.load storm  --candidates 2000
    python -m bench.load expiry --attempts 2000

Candidates sit proctored sessions (one class and session per proctor), answer on a schedule with
think time over the session WebSocket and keep unacknowledged answers to send again, like the
candidate app. Proctors watch their session's feed. Every figure printed is measured here:
ack latency percentiles (send to durable `answer_feedback`), fan-out latency (commit to the
proctor's screen), throughput, errors, and lost / duplicated / missing answers checked against
the database afterwards. Results go to bench/results/<scenario>-<time>.json (and a PNG plot when
matplotlib is installed: `uv run --group bench …`).

Needs PostgreSQL and Redis (EXAMSERVER_DATABASE_URL, default database `bench` on 127.0.0.1,
created if missing; EXAMSERVER_REDIS_URL, default redis://127.0.0.1:6379/14) and Debian's nginx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import websockets
from sqlalchemy import func, select

from bench import scrape
from bench.procstat import cores_used, cpu_by_process
from bench.seeding import choice_test
from delivery_service.cluster import LocalCluster, free_port
from delivery_service.domain.principal import Principal
from delivery_service.loop_watch import tune_gc, watch_loop
from delivery_service.security.passwords import hash_password
from delivery_service.security.tokens import TokenService
from delivery_service.services.catalog import add_test
from delivery_service.settings import Settings
from delivery_service.storage.database import create_engine, create_sessionmaker
from delivery_service.storage.migrate import upgrade
from delivery_service.storage.models import (
    Attempt,
    Class,
    ClassStudent,
    ClassTeacher,
    GroupSession,
    Item,
    LedgerEvent,
    ResponseEvent,
    User,
)

RESULTS = Path(__file__).with_name("results")
SECRET = "bench-secret-" + "x" * 40
ITEMS = 5


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    ms = np.asarray(values) * 1000
    return {
        "count": len(values),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


# ---- the world ----


@dataclass
class World:
    settings: Settings
    tokens: TokenService
    sessions: list[str]
    candidates: list[tuple[Principal, str]]  # (who, session id)
    proctors: list[tuple[Principal, str]]


async def ensure_database(url: str, *, fresh: bool = False) -> None:
    """Create the bench database beside the test one if it is missing (never the test one).

    `fresh` drops and re-creates it first, but only a database whose name starts with `bench`:
    every run leaves its attempts running for hours, and the next run's workers would carry
    them (24,000 after a day of runs: each timer rebuild walked them all, and figures drifted
    from run to run)."""
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    base, _, name = plain.rpartition("/")
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and fresh and name.startswith("bench"):
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        elif exists and fresh:
            print(f"  keeping database {name!r} (not a bench database): earlier runs stay")
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def seed(settings: Settings, candidates: int, proctors: int) -> World:
    engine = create_engine(settings)
    db = create_sessionmaker(engine)
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:6]
    hashed = hash_password("bench", cost=2**8)
    tokens = TokenService(
        secret=SECRET, issuer="examserver", audience="examserver", ttl_seconds=8 * 3600
    )
    world = World(settings, tokens, [], [], [])
    async with db() as s, s.begin():
        users = [
            User(
                username=f"b{run}-s{n:05d}",
                display_name=f"Candidate {n}",
                password_hash=hashed,
                role="student",
                created_at=now,
            )
            for n in range(candidates)
        ]
        teachers = [
            User(
                username=f"b{run}-t{n}",
                display_name=f"Proctor {n}",
                password_hash=hashed,
                role="teacher",
                created_at=now,
            )
            for n in range(proctors)
        ]
        s.add_all([*users, *teachers])
        await s.flush()
        test = await add_test(
            s,
            choice_test(f"Bench {run}", items=ITEMS, time_limit_seconds=3 * 3600),
            created_by=teachers[0].id,
        )
        for n, teacher in enumerate(teachers):
            klass = Class(
                name=f"Bench {run} {n}", state="active", created_by=teacher.id, created_at=now
            )
            s.add(klass)
            await s.flush()
            s.add(ClassTeacher(class_id=klass.id, user_id=teacher.id))
            mine = users[n::proctors]
            s.add_all(ClassStudent(class_id=klass.id, user_id=u.id, enrolled_at=now) for u in mine)
            session = GroupSession(
                class_id=klass.id,
                test_id=test.id,
                title=f"Bench {n}",
                state="waiting",
                scheduled_at=now,
                created_by=teacher.id,
                created_at=now,
            )
            s.add(session)
            await s.flush()
            world.sessions.append(str(session.id))
            world.proctors.append(
                (Principal(teacher.id, teacher.username, "teacher"), str(session.id))
            )
            world.candidates += [
                (Principal(u.id, u.username, "student"), str(session.id)) for u in mine
            ]
    await engine.dispose()
    return world


# ---- the actors ----


@dataclass
class Candidate:
    who: Principal
    session_id: str
    token: str
    base: str
    attempt_id: str | None = None
    seq: int = 0
    pending: dict[int, float] = field(default_factory=dict)  # client_seq -> sent at
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)  # perf_counter at each latency's ack
    errors: list[str] = field(default_factory=list)
    positions: dict[str, str] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    recovered: bool | None = None
    ws: Any = None
    reconnects: int = 0
    synced_at: float = 0.0  # when the last state sync arrived

    def url(self) -> str:
        query = ""
        if self.positions:
            query = "?last_event_id=" + ",".join(self.positions.values())
        return f"{self.base}/api/v1/sessions/{self.session_id}/ws{query}"

    async def live(self, stop: asyncio.Event) -> None:
        """Stay connected until stopped, reconnecting with backoff and full jitter."""
        failures = 0
        while not stop.is_set():
            try:
                async with websockets.connect(self.url(), open_timeout=30, max_size=None) as ws:
                    self.ws = ws
                    await ws.send(json.dumps({"type": "auth", "data": {"token": self.token}}))
                    failures = 0
                    for seq in list(self.pending):  # the outbox, replayed
                        await self._send_answer(seq)
                    beat = asyncio.create_task(self._heartbeat(ws))
                    try:
                        await self._read(ws)
                    finally:
                        beat.cancel()
            except (websockets.WebSocketException, OSError, TimeoutError) as exc:
                self.errors.append(type(exc).__name__)
            self.ws = None
            self.synced.clear()
            if stop.is_set():
                break
            self.reconnects += 1
            failures += 1
            await asyncio.sleep(random.uniform(0, min(5.0, 0.2 * 2**failures)))

    @staticmethod
    async def _heartbeat(ws: Any) -> None:
        """Every 15 s, as the app does: the server closes a socket silent for 45 s."""
        while True:
            await asyncio.sleep(15)
            await ws.send(json.dumps({"type": "heartbeat", "data": {}}))

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            message = json.loads(raw)
            kind = message["type"]
            seq = message.get("seq")
            if seq:
                self.positions[seq.split(":", 1)[0]] = seq
            data = message.get("data") or {}
            if kind == "connected":
                self.recovered = data.get("recovered")
                for name, position in data.get("positions", {}).items():
                    self.positions.setdefault(name, position)
            elif kind == "state_sync_response":
                attempt = data.get("attempt")
                if attempt:
                    self.attempt_id = attempt["id"]
                    self.started.set()
                self.synced_at = time.perf_counter()
                self.synced.set()
            elif kind == "session_started":
                if data.get("attempt_id"):
                    self.attempt_id = data["attempt_id"]
                    self.started.set()
            elif kind == "answer_feedback":
                sent = self.pending.pop(data["client_seq"], None)
                self.acked.add(data["client_seq"])
                if sent is not None:
                    now = time.perf_counter()
                    self.latencies.append(now - sent)
                    self.acked_at.append(now)
            elif kind == "error":
                self.errors.append(data.get("code", "error"))

    async def answer(self) -> None:
        self.seq += 1
        self.answers[self.seq] = {
            "item_id": f"q{self.seq % ITEMS + 1}",
            "response": "ABCD"[self.seq % 4],
            "client_seq": self.seq,
        }
        self.pending[self.seq] = time.perf_counter()
        await self._send_answer(self.seq)

    async def _send_answer(self, seq: int) -> None:
        if self.ws is None:
            return
        self.pending[seq] = time.perf_counter()
        try:
            await self.ws.send(json.dumps({"type": "answer_submitted", "data": self.answers[seq]}))
        except websockets.ConnectionClosed:
            pass


@dataclass
class Proctor:
    """The console, as far as the figures need it: heartbeats, the feed, and resuming by
    `last_event_id` after a reconnect (what it could not resume counts as a snapshot)."""

    who: Principal
    session_id: str
    token: str
    base: str
    seen: int = 0
    fanout: list[float] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    answers: set[tuple[str, int]] = field(default_factory=set)  # (student id, client_seq)
    positions: dict[str, str] = field(default_factory=dict)
    snapshots: int = 0  # state syncs no replay could spare: a reconnect not recovered, a RESYNC
    reconnects: int = 0

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            query = ""
            if self.positions:
                query = "?last_event_id=" + ",".join(self.positions.values())
            url = f"{self.base}/api/v1/sessions/{self.session_id}/ws{query}"
            try:
                async with websockets.connect(url, open_timeout=30, max_size=None) as ws:
                    await ws.send(json.dumps({"type": "auth", "data": {"token": self.token}}))
                    beat = asyncio.create_task(Candidate._heartbeat(ws))
                    try:
                        await self._read(ws)
                    finally:
                        beat.cancel()
            except (websockets.WebSocketException, OSError, TimeoutError):
                await asyncio.sleep(0.5)
            if not stop.is_set():
                self.reconnects += 1

    async def _read(self, ws: Any) -> None:
        greeted = False
        async for raw in ws:
            message = json.loads(raw)
            kind, data = message["type"], message.get("data") or {}
            if message.get("seq"):
                self.positions[message["seq"].split(":", 1)[0]] = message["seq"]
            if kind == "connected":
                greeted = True
                if data.get("recovered") is False:
                    self.snapshots += 1
                for name, position in data.get("positions", {}).items():
                    self.positions.setdefault(name, position)
            elif kind == "state_sync_response":
                if not greeted:
                    self.snapshots += 1  # sent on its own: a RESYNC the stream could not fill
                greeted = False
                self.ready.set()
            elif kind == "answer_submitted":
                self.seen += 1
                self.answers.add((data["student_id"], data["client_seq"]))
                at = datetime.fromisoformat(data["at"])
                self.fanout.append((datetime.now(UTC) - at).total_seconds())


# ---- scenarios ----


async def connect_all(
    world: World, base: str, stop: asyncio.Event, rate: float
) -> tuple[list[Candidate], list[Proctor], list[asyncio.Task[None]]]:
    proctors = [Proctor(p, sid, world.tokens.issue(p), base) for p, sid in world.proctors]
    tasks = [asyncio.create_task(p.watch(stop)) for p in proctors]
    await asyncio.gather(*(p.ready.wait() for p in proctors))
    candidates = [Candidate(c, sid, world.tokens.issue(c), base) for c, sid in world.candidates]
    for n, c in enumerate(candidates):
        tasks.append(asyncio.create_task(c.live(stop)))
        if n % 50 == 49:
            await asyncio.sleep(50 / rate)  # open connections at a civil rate
    async with asyncio.timeout(300):
        await asyncio.gather(*(c.synced.wait() for c in candidates))
    return candidates, proctors, tasks


async def start_sessions(world: World, base: str, candidates: list[Candidate]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base.replace("ws", "http", 1), timeout=300) as http:
        for proctor, sid in world.proctors:
            token = world.tokens.issue(proctor)
            reply = await http.post(
                f"/api/v1/sessions/{sid}/start", headers={"Authorization": f"Bearer {token}"}
            )
            reply.raise_for_status()
    async with asyncio.timeout(300):
        await asyncio.gather(*(c.started.wait() for c in candidates))


async def answering(candidates: list[Candidate], interval: float, stop: asyncio.Event) -> None:
    async def one(c: Candidate) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        while not stop.is_set():
            await c.answer()
            await asyncio.sleep(random.uniform(0.5 * interval, 1.5 * interval))  # think time

    await asyncio.gather(*(one(c) for c in candidates))


async def settle(candidates: list[Candidate], timeout: float = 120) -> None:
    """Wait until every answer sent has been acknowledged (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(c.pending for c in candidates):
        await asyncio.sleep(0.5)


async def verify(settings: Settings, candidates: list[Candidate]) -> dict[str, int]:
    """Lost: acknowledged but not in the database. Duplicated: stored twice. Missing: sent and
    never acknowledged."""
    engine = create_engine(settings)
    db = create_sessionmaker(engine)
    by_attempt: dict[str, list[int]] = {}
    ids = [uuid.UUID(c.attempt_id) for c in candidates if c.attempt_id]
    async with db() as s:
        for chunk in range(0, len(ids), 1000):
            rows = await s.execute(
                select(ResponseEvent.attempt_id, ResponseEvent.client_seq).where(
                    ResponseEvent.attempt_id.in_(ids[chunk : chunk + 1000])
                )
            )
            for attempt_id, seq in rows:
                by_attempt.setdefault(str(attempt_id), []).append(seq)
    await engine.dispose()
    lost = duplicated = missing = 0
    for c in candidates:
        stored = by_attempt.get(c.attempt_id or "", [])
        duplicated += len(stored) - len(set(stored))
        lost += len(c.acked - set(stored))
        missing += len(set(c.answers) - c.acked)
    return {"lost": lost, "duplicated": duplicated, "missing_acks": missing}


def summary(candidates: list[Candidate], proctors: list[Proctor], seconds: float) -> dict[str, Any]:
    latencies = [x for c in candidates for x in c.latencies]
    errors: dict[str, int] = {}
    for c in candidates:
        for e in c.errors:
            errors[e] = errors.get(e, 0) + 1
    return {
        "answers_sent": sum(len(c.answers) for c in candidates),
        "answers_acked": sum(len(c.acked) for c in candidates),
        "ack_per_second": round(len(latencies) / seconds, 1) if seconds else None,
        "ack_latency": percentiles(latencies),
        "fanout_latency": percentiles([x for p in proctors for x in p.fanout]),
        "proctor_events": sum(p.seen for p in proctors),
        # Acknowledged answers no proctor was shown as an event (a snapshot still shows their
        # effect: the grid's counts), and how many snapshots the proctors needed.
        "proctor_missed_events": len(
            {(str(c.who.user_id), seq) for c in candidates for seq in c.acked}
            - {key for p in proctors for key in p.answers}
        ),
        "proctor_snapshots": sum(p.snapshots for p in proctors),
        "proctor_reconnects": sum(p.reconnects for p in proctors),
        "reconnects": sum(c.reconnects for c in candidates),
        "errors": errors,
    }


def over_time(
    candidates: list[Candidate], began: float, window: float = 5.0
) -> list[dict[str, Any]]:
    """Ack latency per window of the run (by ack time): a stall shows as one bad window, a
    saturated path as a rising line, which one histogram cannot tell apart."""
    buckets: dict[int, list[float]] = {}
    for c in candidates:
        for at, latency in zip(c.acked_at, c.latencies, strict=True):
            buckets.setdefault(int((at - began) // window), []).append(latency)
    return [{"t_s": k * window} | percentiles(v) for k, v in sorted(buckets.items()) if k >= 0]


def phase(name: str, since: float) -> float:
    now = time.perf_counter()
    print(f"  {name}: {now - since:.1f} s", flush=True)
    return now


async def steady(world: World, cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    base = f"ws://127.0.0.1:{cluster.port}"
    stop = asyncio.Event()
    lag: list[float] = []  # the harness's own lateness: its latencies include it
    lag_watch = asyncio.create_task(watch_loop(lag.append))
    t = time.perf_counter()
    candidates, proctors, tasks = await connect_all(world, base, stop, args.connect_rate)
    t = phase("all connected", t)
    await start_sessions(world, base, candidates)
    t = phase("sessions started", t)
    halt = asyncio.Event()
    load = asyncio.create_task(answering(candidates, args.interval, halt))
    began = time.perf_counter()
    ports = list(cluster.processes)
    saves_before = await scrape.histogram(ports, "examserver_answer_save_seconds")
    lag_before = await scrape.histogram(ports, "examserver_event_loop_lag_seconds")
    workers = {process.pid: "workers" for process in cluster.processes.values()}
    workers[os.getpid()] = "harness"
    cpu_before = cpu_by_process()
    blipped: dict[str, Any] | None = None
    if args.blip != "none":
        await asyncio.sleep(args.duration / 2)
        blipped = await blip(args.blip, world.settings.redis_url)
        print(f"  redis blip: {blipped}", flush=True)
        await asyncio.sleep(max(began + args.duration - time.perf_counter(), 0))
    else:
        await asyncio.sleep(args.duration)
    halt.set()
    await load
    elapsed = time.perf_counter() - began
    cores = cores_used(cpu_before, cpu_by_process(), elapsed, workers)
    saves = scrape.summary(
        saves_before, await scrape.histogram(ports, "examserver_answer_save_seconds")
    )
    lags = scrape.summary(
        lag_before, await scrape.histogram(ports, "examserver_event_loop_lag_seconds")
    )
    t = phase("load", t)
    await settle(candidates)
    phase("settled", t)
    result = summary(candidates, proctors, elapsed)
    if blipped is not None:
        result["blip"] = blipped
    result["timeline"] = [round(x * 1000, 1) for c in candidates for x in c.latencies[:50]]
    result["over_time"] = over_time(candidates, began)
    lag_watch.cancel()
    result["harness_loop_lag"] = percentiles(lag)
    result["server_answer_save"] = saves  # the workers' own timing, receipt to commit
    result["server_loop_lag"] = lags
    result["cores_used"] = cores  # during the load, by process group
    stop.set()
    for t in tasks:
        t.cancel()
    result["database"] = await verify(world.settings, candidates)
    return result


REDIS_SERVER = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


async def blip(kind: str, url: str) -> dict[str, Any]:
    """Hurt Redis in the middle of the load, as production sometimes does:
    `kill-pubsub` drops every pub/sub connection (CLIENT KILL TYPE pubsub); `sleep` makes the
    server unresponsive for 3 s (DEBUG SLEEP 3, or CLIENT PAUSE 3000 where DEBUG is disabled);
    `restart` shuts the local server down without saving and starts it again, empty (the
    workers must rebuild timers from the database and clients resync from snapshots)."""
    import subprocess

    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    redis = Redis.from_url(url)
    began = time.perf_counter()
    done: dict[str, Any] = {"kind": kind}
    try:
        if kind == "kill-pubsub":
            done["killed"] = await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        elif kind == "sleep":
            try:
                await redis.execute_command("DEBUG", "SLEEP", "3")
                done["how"] = "DEBUG SLEEP 3"
            except ResponseError:
                await redis.execute_command("CLIENT", "PAUSE", "3000", "ALL")
                await asyncio.sleep(3)
                done["how"] = "CLIENT PAUSE 3000 ALL (DEBUG is disabled)"
        elif kind == "restart":
            with contextlib.suppress(RedisConnectionError):
                await redis.execute_command("SHUTDOWN", "NOSAVE")
            await asyncio.sleep(0.5)
            subprocess.run(REDIS_SERVER, check=True)
            for _ in range(100):
                with contextlib.suppress(RedisConnectionError):
                    if await redis.ping():
                        break
                await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    done["seconds"] = round(time.perf_counter() - began, 2)
    return done


async def storm(world: World, cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    """Everyone drops at once and comes back within 5 s: time until each is resynced, and how
    many resumed from the Redis streams (`recovered: true`) rather than a database snapshot."""
    base = f"ws://127.0.0.1:{cluster.port}"
    stop = asyncio.Event()
    candidates, proctors, tasks = await connect_all(world, base, stop, args.connect_rate)
    await start_sessions(world, base, candidates)
    halt = asyncio.Event()
    load = asyncio.create_task(answering(candidates, args.interval, halt))
    await asyncio.sleep(args.warmup)
    workers = {process.pid: "workers" for process in cluster.processes.values()}
    workers[os.getpid()] = "harness"
    cpu_before, dropped = cpu_by_process(), time.perf_counter()
    for c in candidates:
        c.synced.clear()
        c.recovered = None
    # Everyone at once: closing them one awaited close handshake at a time spread the "drop"
    # over seconds, which the figure then counted. live() reconnects each within 5 s.
    await asyncio.gather(*(c.ws.close() for c in candidates if c.ws is not None))
    async with asyncio.timeout(300):
        await asyncio.gather(*(c.synced.wait() for c in candidates))
    back = time.perf_counter() - dropped
    cores = cores_used(cpu_before, cpu_by_process(), back, workers)
    came_back = [c.synced_at - dropped for c in candidates]
    await asyncio.sleep(5)
    halt.set()
    await load
    await settle(candidates)
    result = summary(candidates, proctors, time.perf_counter() - dropped)
    result["storm"] = {
        "candidates": len(candidates),
        "all_resynced_s": round(back, 2),
        "resynced_by_s": {  # seconds after the drop until this share of candidates was back
            f"p{q}": round(float(np.percentile(came_back, q)), 2) for q in (50, 90, 99)
        },
        "recovered_from_streams": sum(1 for c in candidates if c.recovered is True),
        "cores_used": cores,  # by process group, from the drop until all were back
    }
    stop.set()
    for t in tasks:
        t.cancel()
    result["database"] = await verify(world.settings, candidates)
    return result


async def expiry(world: World, cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    """N running attempts whose deadlines fall in the same second: how long until every one is
    expired by the workers' sweepers (they learn the deadlines by reconciling with the
    database, as after a Redis loss)."""
    engine = create_engine(world.settings)
    db = create_sessionmaker(engine)
    async with db() as s, s.begin():
        test_id = await s.scalar(select(GroupSession.test_id).limit(1))
        form = [str(i) for i in await s.scalars(select(Item.id).where(Item.test_id == test_id))]
        now = datetime.now(UTC)
        due = now + timedelta(seconds=args.lead)
        s.add_all(
            Attempt(
                test_id=test_id,
                user_id=c.user_id,
                attempt_number=100,
                state="in_progress",
                form=form,
                extra_seconds=0,
                position=0,
                created_at=now,
                started_at=now,
                deadline=due,
            )
            for c, _ in world.candidates[: args.attempts]
        )
    due_with_grace = due + world.settings.grace
    while True:
        await asyncio.sleep(0.05)
        async with db() as s:
            left = await s.scalar(
                select(func.count()).where(Attempt.deadline == due, Attempt.state == "in_progress")
            )
        if left == 0:
            break
    done = datetime.now(UTC)
    async with db() as s:
        expired = await s.scalar(
            select(func.count()).where(Attempt.deadline == due, Attempt.state == "expired")
        )
        last = await s.scalar(select(func.max(Attempt.ended_at)).where(Attempt.deadline == due))
        # Exactly once: one `attempt_expired` ledger event per attempt, whichever worker won.
        per_attempt = list(
            await s.scalars(
                select(func.count())
                .select_from(LedgerEvent)
                .join(Attempt, Attempt.id == LedgerEvent.attempt_id)
                .where(Attempt.deadline == due, LedgerEvent.type == "attempt_expired")
                .group_by(LedgerEvent.attempt_id)
            )
        )
    await engine.dispose()
    return {
        "attempts": args.attempts,
        "expired": expired,
        "expired_once": sum(1 for n in per_attempt if n == 1),
        "expired_twice_or_more": sum(1 for n in per_attempt if n > 1),
        "lag_until_all_expired_s": round((done - due_with_grace).total_seconds(), 2),
        "lag_of_last_end_s": round(((last or done) - due_with_grace).total_seconds(), 2),
    }


SCENARIOS = {"steady": steady, "storm": storm, "expiry": expiry}


def cluster_env(database: str, redis: str, prefix: str) -> dict[str, str]:
    """The environment of the workers a benchmark starts (and its own Settings, below)."""
    return os.environ | {
        "EXAMSERVER_ENVIRONMENT": "test",
        "EXAMSERVER_DATABASE_URL": database,
        "EXAMSERVER_REDIS_URL": redis,
        "EXAMSERVER_REDIS_PREFIX": f"{prefix}:exam:v1",
        "EXAMSERVER_JWT_SECRET": SECRET,
        "EXAMSERVER_LEDGER_KEY": SECRET + "-ledger",
        "EXAMSERVER_LOG_FORMAT": "json",
    }


def settings_of(env: dict[str, str]) -> Settings:
    """The Settings a worker with this environment has (lists and objects are JSON there)."""

    def value(raw: str) -> Any:
        return json.loads(raw) if raw[:1] in "[{" else raw

    return Settings(
        **{
            k.removeprefix("EXAMSERVER_").lower(): value(v)
            for k, v in env.items()
            if k.startswith("EXAMSERVER_")
        }
    )


def bench_databases() -> tuple[str, str]:
    return (
        os.environ.get(
            "EXAMSERVER_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/bench"
        ),
        os.environ.get("EXAMSERVER_REDIS_URL", "redis://127.0.0.1:6379/14"),
    )


async def seeded_cluster(
    name: str, *, workers: int, candidates: int, proctors: int, env: dict[str, str] | None = None
) -> tuple[World, LocalCluster]:
    """What every cluster benchmark starts from: the bench database migrated and seeded, and
    `workers` workers behind nginx on a free port, running (`env` added to theirs)."""
    database, redis = bench_databases()
    await ensure_database(database, fresh=True)
    full = cluster_env(database, redis, f"{name}{secrets.token_hex(3)}") | (env or {})
    settings = settings_of(full)
    await asyncio.to_thread(upgrade, settings.database_url)
    world = await seed(settings, candidates, proctors)
    cluster = LocalCluster(
        workers=workers,
        port=free_port(),
        prefix=Path(tempfile.mkdtemp(prefix=f"examserver-{name}-")),
        env=full,
    )
    await asyncio.to_thread(cluster.start)
    return world, cluster


async def main(args: argparse.Namespace) -> dict[str, Any]:
    expiry = args.scenario == "expiry"
    world, cluster = await seeded_cluster(
        "bench",
        workers=args.workers,
        candidates=args.attempts if expiry else args.candidates,
        proctors=args.proctors,
        # The expiry scenario writes its deadlines straight into the database, so the sweepers
        # learn them by reconciling; the other scenarios keep the production interval (30 s).
        env={"EXAMSERVER_RECONCILE_INTERVAL_SECONDS": "2"} if expiry else None,
    )
    try:
        began = datetime.now(UTC)
        result = await SCENARIOS[args.scenario](world, cluster, args)
    finally:
        await asyncio.to_thread(cluster.stop)
    return {
        "scenario": args.scenario,
        "date": began.isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "workers": args.workers,
        "candidates": args.candidates,
        "proctors": args.proctors,
        "interval_s": args.interval,
        "duration_s": args.duration if args.scenario == "steady" else None,
        "command": "python -m bench.load " + " ".join(args.argv),
        **result,
    }


def plot(result: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    samples = result.get("timeline") or []
    if not samples:
        return None
    series = result.get("over_time") or []
    fig, axes = plt.subplots(1, 2 if series else 1, figsize=(12 if series else 7, 4))
    ax = axes[0] if series else axes
    ax.hist(samples, bins=60)
    ax.set_xlabel("answer ack latency (ms)")
    ax.set_ylabel("answers")
    ax.set_title(
        f"{result['scenario']}: {result['candidates']} candidates, {result['workers']} workers"
    )
    if series:
        right = axes[1]
        times = [w["t_s"] for w in series]
        for key in ("p50_ms", "p99_ms", "max_ms"):
            right.plot(times, [w[key] for w in series], label=key.removesuffix("_ms"))
        right.set_yscale("log")
        right.set_xlabel("seconds into the load (5 s windows, by ack time)")
        right.set_ylabel("ack latency (ms)")
        right.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def tune_harness_gc() -> None:
    """The harness holds thousands of sockets too: with Python's collector settings its own full
    collections stopped it for a second at a time, which read as server latency. It takes the
    workers' settings."""
    tune_gc(Settings.model_fields["gc_thresholds"].default)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument("--proctors", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between answers")
    parser.add_argument("--duration", type=float, default=300.0, help="steady: seconds of load")
    parser.add_argument("--warmup", type=float, default=20.0, help="storm: seconds before the drop")
    parser.add_argument("--attempts", type=int, default=2000, help="expiry: attempts due at once")
    parser.add_argument(
        "--lead", type=float, default=15.0, help="expiry: seconds until they are due"
    )
    parser.add_argument(
        "--blip",
        choices=["none", "kill-pubsub", "sleep", "restart"],
        default="none",
        help="steady: hurt Redis halfway through the load",
    )
    parser.add_argument("--connect-rate", type=float, default=400.0, help="new sockets per second")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    tune_harness_gc()
    result = asyncio.run(main(args))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = RESULTS / f"{args.scenario}-{stamp}.json"
    out.write_text(json.dumps(result, indent=2))
    png = plot(result, out.with_suffix(".png"))
    shown = {k: v for k, v in result.items() if k not in ("timeline", "over_time")}
    print(json.dumps(shown, indent=2))
    print(f"written: {out}" + (f" and {png}" if png else ""))


if __name__ == "__main__":
    cli()
