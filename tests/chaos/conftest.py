"""Fixtures for the fault suite: real workers (tests/cluster's Cluster), fault proxies in front of
PostgreSQL, Redis or a worker, and a private redis-server a test may kill, pause or freeze.

The shared Redis and PostgreSQL of the machine are never stopped: "PostgreSQL is down" is a
proxy that refuses (after the worker's own backends were terminated), "Redis restarted" is a
private redis-server killed and started again on its port. Workers get short timeouts, so a
fault costs seconds, not the defaults' tens of seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.chaos.proxy import FaultProxy
from tests.cluster.conftest import Cluster, Worker
from tests.cluster.conftest import cluster as cluster  # noqa: F401  (the fixture, re-exported)
from tests.services import PG_URL, REDIS_URL
from tests.support import Api, Socket, free_port, sample_test

T = TypeVar("T")

# Short enough that a fault shows within seconds; long enough that a loaded two-core machine's
# ordinary statements never hit them.
TIMEOUT_SECONDS = 1.5
READINESS_SECONDS = 0.5
CHAOS_ENV = {
    "EXAMSERVER_DATABASE_CONNECT_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    "EXAMSERVER_DATABASE_COMMAND_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    "EXAMSERVER_DATABASE_POOL_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    "EXAMSERVER_REDIS_SOCKET_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    "EXAMSERVER_REDIS_CONNECT_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    "EXAMSERVER_READINESS_TIMEOUT_SECONDS": str(READINESS_SECONDS),
    "EXAMSERVER_DATABASE_IDLE_TRANSACTION_TIMEOUT_SECONDS": "3",
    # The streaming candidates send faster than a person; the limit is not what is tested.
    "EXAMSERVER_WS_RATE_PER_SECOND": "200",
    "EXAMSERVER_WS_RATE_BURST": "400",
}
SWEEP_INTERVAL = 0.1  # tests/cluster's EXAMSERVER_SWEEP_INTERVAL_SECONDS
GRACE = 0.5  # tests/cluster's EXAMSERVER_GRACE_MS, in seconds
UNAVAILABLE = {"database_unavailable", "redis_unavailable"}
# /readyz answers within its own timeout and a margin: a load balancer polls it and must hear
# "not ready" while a dependency hangs, not wait for the dependency's timeouts.
READY_WITHIN = READINESS_SECONDS + 1.0


def host_port(url: str) -> tuple[str, int]:
    """("127.0.0.1", 5432) of postgresql+asyncpg://user@127.0.0.1:5432/db (or a Redis URL)."""
    netloc = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = netloc.partition(":")
    return host, int(port or 0)


def via(url: str, proxy: FaultProxy) -> str:
    """The same URL with its host:port replaced by the proxy's."""
    scheme, rest = url.split("://", 1)
    netloc, _, path = rest.partition("/")
    user = netloc.rsplit("@", 1)[0] + "@" if "@" in netloc else ""
    return f"{scheme}://{user}{proxy.url_host}/{path}"


async def eventually(
    check: Callable[[], Any], *, within: float, every: float = 0.05, what: str = ""
) -> Any:
    """Poll `check` (plain or async) until it returns something other than None, False or 0,
    and return that; or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found is not None and found is not False and found != 0:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g}s: {what or check}")
        await asyncio.sleep(every)


class RedisServer:
    """A redis-server of our own on a free port, to kill, restart empty, pause or freeze
    (never the machine's shared one)."""

    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        log = self.logs / f"redis-{self.port}.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

        async def answers() -> bool:
            client = Redis(port=self.port, socket_connect_timeout=1)
            try:
                return bool(await client.ping())
            except Exception:
                return False
            finally:
                await client.aclose()

        await eventually(answers, within=10, what=f"redis-server on {self.port} answers")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen one must be able to die
            self.process.kill()
            self.process.wait(timeout=10)

    async def restart_empty(self) -> None:
        """Crash and come back with nothing (no persistence): every key and script gone."""
        self.kill()
        await self.start()

    def freeze(self) -> None:
        """kill -STOP: the process stops answering anything, accepted connections stay open."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def client(self) -> Redis:
        return Redis(port=self.port, decode_responses=True)


async def redis_command(client: Redis, *args: str | int) -> Any:
    """A raw command (CLIENT PAUSE, CLIENT KILL …) as the test would type it in redis-cli."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


@dataclass
class Exam:
    """One test and, per candidate, a logged-in client and a started attempt."""

    test_id: str
    teacher: Api
    candidates: list[Api]
    attempts: list[str]


@dataclass
class Chaos:
    cluster: Cluster
    logs: Path
    proxies: list[FaultProxy] = field(default_factory=list)
    redis_servers: list[RedisServer] = field(default_factory=list)
    clients: list[Api] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.cluster.sessions

    def background(self, work: Awaitable[T]) -> asyncio.Task[T]:
        """Run `work` alongside the test; cancelled at teardown if the test did not await it."""
        task = asyncio.ensure_future(work)
        self.tasks.append(task)
        return task

    async def worker(self, *, port: int | None = None, **env: str) -> Worker:
        return await self.cluster.start_worker(port=port, env=env)

    async def workers(self, count: int, **env: str) -> list[Worker]:
        """Start `count` workers at once (each takes seconds to import and connect)."""
        starting = (self.cluster.start_worker(env=env) for _ in range(count))
        return list(await asyncio.gather(*starting))

    async def proxy(self, target: tuple[str, int]) -> FaultProxy:
        proxy = FaultProxy(*target)
        await proxy.start()
        self.proxies.append(proxy)
        return proxy

    async def database_proxy(self) -> tuple[FaultProxy, str]:
        """A proxy in front of the test database, and the database URL through it."""
        proxy = await self.proxy(host_port(PG_URL))
        return proxy, via(PG_URL, proxy)

    async def redis_proxy(self, url: str = REDIS_URL) -> tuple[FaultProxy, str]:
        proxy = await self.proxy(host_port(url))
        return proxy, via(url, proxy)

    async def private_redis(self) -> RedisServer:
        """A redis-server of this test's own, which every worker started after uses."""
        server = RedisServer(self.logs)
        await server.start()
        self.redis_servers.append(server)
        self.cluster.env["EXAMSERVER_REDIS_URL"] = server.url
        return server

    async def login(self, worker: Worker, username: str) -> Api:
        api = await Api.login(worker.base_url, username)
        self.clients.append(api)
        return api

    def on(self, worker: Worker, api: Api) -> Api:
        """The same user's token, talking to another worker."""
        other = Api(worker.base_url, api.token)
        self.clients.append(other)
        return other

    async def exam(
        self, worker: Worker, candidates: int, *, start: bool = True, **spec: Any
    ) -> Exam:
        """A test for `candidates` students (student1…), each with an attempt (started)."""
        teacher = await self.login(worker, "teacher")
        test = await teacher.post("/tests", sample_test(**spec), expect=201)
        apis, attempts = [], []
        for n in range(1, candidates + 1):
            student = await self.login(worker, f"student{n}")
            attempt = await student.post("/attempts", {"test_id": test["id"]}, expect=201)
            if start:
                await student.post(f"/attempts/{attempt['id']}/start")
            apis.append(student)
            attempts.append(str(attempt["id"]))
        return Exam(str(test["id"]), teacher, apis, attempts)

    # ---- PostgreSQL, read directly (not through any proxy) ---------------------------------

    async def stored(self, attempt_ids: list[str]) -> list[dict[str, Any]]:
        """Every response_history row of these attempts: attempt, client_seq, item, response."""
        query = text(
            "SELECT h.attempt_id, h.client_seq, i.identifier AS item, h.response, h.applied, "
            "h.received_at FROM response_history h JOIN items i ON i.id = h.item_id "
            "WHERE h.attempt_id IN :ids ORDER BY h.id"
        ).bindparams(bindparam("ids", expanding=True))
        async with self.sessions() as s:
            rows = await s.execute(query, {"ids": [uuid.UUID(a) for a in attempt_ids]})
            return [dict(row._mapping) | {"attempt_id": str(row.attempt_id)} for row in rows]

    async def item_states(self, attempt_ids: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
        """(attempt, item identifier) -> the item's stored response and client_seq."""
        query = text(
            "SELECT s.attempt_id, i.identifier AS item, s.response, s.client_seq "
            "FROM item_states s JOIN items i ON i.id = s.item_id WHERE s.attempt_id IN :ids"
        ).bindparams(bindparam("ids", expanding=True))
        async with self.sessions() as s:
            rows = await s.execute(query, {"ids": [uuid.UUID(a) for a in attempt_ids]})
            return {
                (str(row.attempt_id), row.item): dict(row._mapping)
                | {"attempt_id": str(row.attempt_id)}
                for row in rows
            }

    async def attempt_row(self, attempt_id: str) -> dict[str, Any]:
        async with self.sessions() as s:
            row = (
                await s.execute(
                    text(
                        "SELECT state, deadline, ended_at, end_reason FROM attempts WHERE id = :id"
                    ),
                    {"id": uuid.UUID(attempt_id)},
                )
            ).one()
            return dict(row._mapping)

    async def terminate_backends(self, proxy: FaultProxy) -> int:
        """pg_terminate_backend on the backends serving the proxy's links (as a stopping
        PostgreSQL does: each client is told "terminating connection", then dropped)."""
        ports = proxy.upstream_ports()
        if not ports:
            return 0
        async with self.sessions() as s, s.begin():
            killed = await s.scalars(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND client_port IN :ports"
                ).bindparams(bindparam("ports", expanding=True)),
                {"ports": ports},
            )
            return sum(1 for ok in killed if ok)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        # Chaos leaves nothing worth a graceful stop: kill the workers first (a draining
        # worker behind a closed proxy would only wait out its timeouts), then the rest.
        for worker in self.cluster.workers:
            if worker.process.poll() is None:
                worker.kill()
        for api in self.clients:
            with contextlib.suppress(Exception):
                await api.close()
        for proxy in self.proxies:
            await proxy.close()
        for server in self.redis_servers:
            server.kill()


@pytest.fixture
async def chaos(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Chaos]:
    """The cluster (whose teacher teaches its students' homeroom) with faults to inject."""
    cluster.env.update(CHAOS_ENV)
    helper = Chaos(cluster, tmp_path)
    try:
        yield helper
    finally:
        await helper.close()


async def probe(
    worker: Worker,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    timeout: float = 30,
) -> tuple[httpx.Response, float]:
    """One request, and how long it took (seconds)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=timeout) as http:
        started = time.monotonic()
        reply = await http.request(method, path, json=body, headers=headers)
        return reply, time.monotonic() - started


def error_code(reply: httpx.Response) -> str | None:
    """The stable error code of a JSON error body, or None (not JSON, no code)."""
    try:
        body = reply.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def assert_unavailable(reply: httpx.Response, code: str) -> None:
    """503 with the stable code and a Retry-After a client can obey."""
    assert reply.status_code == 503, (reply.status_code, reply.text)
    assert error_code(reply) == code, reply.text
    retry_after = reply.headers.get("retry-after", "")
    assert retry_after.isdigit(), reply.headers
    assert int(retry_after) >= 1, reply.headers


async def assert_ready_says(worker: Worker, status: int) -> float:
    """/readyz answers `status`, within READY_WITHIN; returns how long it took."""
    reply, took = await probe(worker, "GET", "/readyz", timeout=30)
    assert reply.status_code == status, reply.text
    assert took < READY_WITHIN, f"/readyz took {took:.2f}s"
    return took


async def assert_alive(worker: Worker) -> None:
    """/healthz: the process serves, whatever its dependencies do."""
    reply, took = await probe(worker, "GET", "/healthz", timeout=10)
    assert reply.status_code == 200, reply.text
    assert took < 1.0, f"/healthz took {took:.2f}s"


async def greeted(ws: Socket) -> dict[str, Any]:
    """The attempt socket's greeting: auth_success, attempt_state, timer; the state's data."""
    await ws.until("auth_success")
    state = await ws.until("attempt_state")
    await ws.until("timer")
    return dict(state["data"])


def socket_messages(wire: bytes) -> list[dict[str, Any]]:
    """The JSON messages in bytes a server sent down a WebSocket (unmasked text frames, no
    compression): what a held link kept from the client."""
    messages, at = [], 0
    while at + 2 <= len(wire):
        opcode, length = wire[at] & 0x0F, wire[at + 1] & 0x7F
        at += 2
        if length == 126:
            length, at = int.from_bytes(wire[at : at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(wire[at : at + 8], "big"), at + 8
        if opcode == 1:
            messages.append(json.loads(wire[at : at + length]))
        at += length
    return messages


def http_reply(wire: bytes) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of the HTTP/1.1 response in bytes a server sent."""
    head, _, body = wire.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            body = body[: int(value)]
    return status, json.loads(body)


async def deadline_in(chaos: Chaos, teacher: Api, attempt_id: str, seconds: float) -> datetime:
    """Move a running attempt's deadline to about `seconds` from now (a proctor's audited
    extension, negative here); return the deadline PostgreSQL holds."""
    current = (await chaos.attempt_row(attempt_id))["deadline"]
    shift = (datetime.now(UTC) + timedelta(seconds=seconds) - current).total_seconds()
    await teacher.post(
        f"/attempts/{attempt_id}/extend", {"seconds": round(shift), "reason": "fault test"}
    )
    deadline: datetime = (await chaos.attempt_row(attempt_id))["deadline"]
    return deadline


async def until_moment(moment: datetime) -> None:
    """Sleep until a wall-clock moment (the test, the workers and PostgreSQL share a clock)."""
    wait = (moment - datetime.now(UTC)).total_seconds()
    if wait > 0:
        await asyncio.sleep(wait)


async def metric(worker: Worker, name: str, **labels: str) -> float:
    """The sum of a worker's Prometheus samples of that name (and labels)."""
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=10) as http:
        exposition = (await http.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
