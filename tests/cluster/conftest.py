"""Real worker processes (`examserver serve`) sharing one PostgreSQL and one Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.live.keys import Keys
from delivery_service.storage.database import create_engine, create_sessionmaker
from tests.conftest import make_settings
from tests.support import HOMEROOM, TEST_SECRET, add_class, add_user, free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Die like a crashed machine: no drain, no goodbye."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.wait()

    def wait(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@dataclass
class Cluster:
    env: dict[str, str]
    logs: Path
    redis: Redis
    keys: Keys
    sessions: async_sessionmaker[AsyncSession]
    workers: list[Worker] = field(default_factory=list)

    async def start_worker(
        self, *, port: int | None = None, env: Mapping[str, str] | None = None
    ) -> Worker:
        """Start one worker and wait until it is ready. `port` restarts one where a killed
        worker was (its clients' addresses stay valid); `env` overrides this worker's settings
        only (e.g. its database through a fault proxy)."""
        port = port or free_port()
        log = self.logs / f"worker-{port}.log"
        with log.open("ab") as out:  # the child keeps its own descriptor; a restart appends
            process = subprocess.Popen(
                [sys.executable, "-m", "delivery_service", "serve", "--port", str(port)],
                env={**self.env, **(env or {})},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(port, process, log)
        self.workers.append(worker)
        async with httpx.AsyncClient(base_url=worker.base_url) as http:
            for _ in range(300):
                if process.poll() is not None:
                    raise RuntimeError(f"worker exited early:\n{log.read_text()}")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return worker
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"worker on {port} never became ready:\n{log.read_text()}")

    def stop_all(self) -> None:
        """Terminate all at once (each drains for a moment), then wait for every one."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait()


@pytest.fixture
async def cluster(pg_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = make_settings(pg_url, redis_url)
    env = os.environ | {
        "EXAMSERVER_ENVIRONMENT": "test",
        "EXAMSERVER_DATABASE_URL": pg_url,
        "EXAMSERVER_REDIS_URL": redis_url,
        "EXAMSERVER_REDIS_PREFIX": f"c{uuid.uuid4().hex[:10]}:exam:v1",
        "EXAMSERVER_JWT_SECRET": TEST_SECRET,
        "EXAMSERVER_LEDGER_KEY": TEST_SECRET + "-ledger",
        "EXAMSERVER_PASSWORD_HASH_COST": str(settings.password_hash_cost),
        "EXAMSERVER_SWEEP_INTERVAL_SECONDS": "0.1",
        "EXAMSERVER_GRACE_MS": "500",
    }
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    teacher = await add_user(sessions, "teacher", "teacher")
    students = [await add_user(sessions, f"student{n}") for n in range(1, 13)]
    # Staff act on the attempts of the classes they teach (as in tests/integration).
    await add_class(sessions, HOMEROOM, teachers=[teacher], students=students)
    redis = Redis.from_url(redis_url, decode_responses=True)
    cluster = Cluster(env, tmp_path, redis, Keys(env["EXAMSERVER_REDIS_PREFIX"]), sessions)
    try:
        yield cluster
    finally:
        cluster.stop_all()
        await redis.aclose()
        await engine.dispose()
