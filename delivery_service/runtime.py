"""Everything a worker holds while it runs, built from Settings in the app's lifespan.

Handlers reach it through `request.app.state.runtime` (see api/deps.py); nothing connects at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from delivery_service.clock import ServerClock
from delivery_service.live.bus import Bus
from delivery_service.live.connection import create_redis
from delivery_service.live.guesses import PasswordGuesses
from delivery_service.live.keys import Keys
from delivery_service.live.owners import Owners
from delivery_service.live.presence import Presence
from delivery_service.live.scripts import Scripts
from delivery_service.live.sockets import SocketRegistry
from delivery_service.live.throttle import LoginThrottle
from delivery_service.live.tickets import Tickets
from delivery_service.live.timers import Timers
from delivery_service.loop_watch import GcWatch, watch_loop
from delivery_service.metrics import Metrics
from delivery_service.security.device_cookies import DeviceCookies
from delivery_service.security.tokens import TokenService
from delivery_service.services.accounts import AccountService
from delivery_service.services.attempts import AttemptContext, AttemptService
from delivery_service.services.audience import AccessPasswords
from delivery_service.services.availability import AvailabilityService, NetworkGate
from delivery_service.services.bank import ItemBankService
from delivery_service.services.catalog import CatalogService
from delivery_service.services.classes import ClassService
from delivery_service.services.evidence import Evidence
from delivery_service.services.expiry import ExpirySweeper
from delivery_service.services.grading import GradingService
from delivery_service.services.greeting import Greeter
from delivery_service.services.items import ItemCache
from delivery_service.services.oidc import OidcSignIn
from delivery_service.services.revocation import Revocations
from delivery_service.services.sessions import GroupSessions
from delivery_service.services.user_import import UserImports
from delivery_service.services.users import UserService
from delivery_service.settings import Settings
from delivery_service.storage.database import (
    check_durability,
    create_engine,
    create_sessionmaker,
    db_now,
)
from delivery_service.storage.ledger import Ledger

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    worker_id: str
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    clock: ServerClock
    bus: Bus
    timers: Timers
    owners: Owners
    tickets: Tickets
    tokens: TokenService
    accounts: AccountService
    users: UserService
    revocations: Revocations
    catalog: CatalogService
    availability: AvailabilityService
    networks: NetworkGate
    bank: ItemBankService
    attempts: AttemptService
    grading: GradingService
    user_imports: UserImports
    classes: ClassService
    group_sessions: GroupSessions
    greeter: Greeter
    evidence: Evidence
    metrics: Metrics
    ledger: Ledger
    presence: Presence
    sweeper: ExpirySweeper
    sockets: SocketRegistry
    oidc: OidcSignIn | None = None  # OpenID Connect sign-in, when EXAMSERVER_OIDC_ISSUER is set
    draining: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @cached_property
    def gc_watch(self) -> GcWatch:
        return GcWatch(self.metrics)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = create_engine(settings)
        db = create_sessionmaker(engine)
        redis = create_redis(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            socket_timeout=settings.redis_socket_timeout_seconds,
            connect_timeout=settings.redis_connect_timeout_seconds,
        )
        keys = Keys(settings.redis_prefix)
        scripts = Scripts.register(redis)
        clock = ServerClock()
        metrics = Metrics()
        bus = Bus(
            redis,
            keys,
            scripts,
            maxlen=settings.stream_maxlen,
            ttl_seconds=settings.stream_ttl_seconds,
            metrics=metrics,
        )
        timers = Timers(redis, keys, scripts, settings.grace)
        tokens = TokenService(
            secret=settings.jwt_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.jwt_ttl_seconds,
        )
        ledger = Ledger(settings.ledger_key.encode())
        revocations = Revocations(
            db=db, redis=redis, keys=keys, ttl_seconds=settings.token_recheck_seconds
        )
        item_cache = ItemCache()
        passwords = AccessPasswords(
            PasswordGuesses(
                keys,
                scripts,
                max_failures=settings.access_password_max_failures,
                window_seconds=settings.login_window_seconds,
            ),
            hash_cost=settings.password_hash_cost,
        )
        attempts = AttemptService(
            AttemptContext(
                db=db,
                timers=timers,
                bus=bus,
                items=item_cache,
                grace=settings.grace,
                ledger=ledger,
                passwords=passwords,
                metrics=metrics,
            )
        )
        presence = Presence(redis, keys, int(settings.ws_heartbeat_timeout_seconds * 1000))
        group_sessions = GroupSessions(
            db=db,
            attempts=attempts,
            bus=bus,
            timers=timers,
            presence=presence,
            grace=settings.grace,
            ledger=ledger,
            open_lead=settings.session_open_lead,
        )
        evidence = Evidence(db=db, ledger=ledger, bus=bus, attempts=attempts)
        return cls(
            settings=settings,
            worker_id=secrets.token_hex(4),
            engine=engine,
            db=db,
            redis=redis,
            keys=keys,
            clock=clock,
            bus=bus,
            timers=timers,
            owners=Owners(redis, keys, scripts, int(settings.ws_heartbeat_timeout_seconds * 1000)),
            tickets=Tickets(redis, keys, settings.ws_ticket_ttl_seconds),
            tokens=tokens,
            accounts=AccountService(
                db=db,
                tokens=tokens,
                throttle=LoginThrottle(
                    keys,
                    scripts,
                    max_failures=settings.login_max_failures,
                    max_per_address=settings.login_max_per_address,
                    window_seconds=settings.login_window_seconds,
                ),
                devices=DeviceCookies(settings.jwt_secret),
                revocations=revocations,
                ledger=ledger,
                hash_cost=settings.password_hash_cost,
            ),
            users=UserService(
                db=db,
                tokens=tokens,
                revocations=revocations,
                ledger=ledger,
                hash_cost=settings.password_hash_cost,
                set_password_ttl_seconds=settings.set_password_link_hours * 3600,
            ),
            revocations=revocations,
            catalog=CatalogService(db=db, ledger=ledger, hash_cost=settings.password_hash_cost),
            availability=AvailabilityService(db=db, ledger=ledger, passwords=passwords),
            networks=NetworkGate(db=db, observations=evidence.observations),
            bank=ItemBankService(db=db, ledger=ledger),
            attempts=attempts,
            grading=GradingService(db=db, items=item_cache, attempts=attempts),
            user_imports=UserImports.build(settings, db=db, ledger=ledger, revocations=revocations),
            classes=ClassService(db=db),
            group_sessions=group_sessions,
            greeter=Greeter(db=db, group_sessions=group_sessions, attempts=attempts, ledger=ledger),
            evidence=evidence,
            ledger=ledger,
            metrics=metrics,
            presence=presence,
            sweeper=ExpirySweeper(
                attempts=attempts.expiry,
                group_sessions=group_sessions.lifecycle,
                timers=timers,
                clock=clock,
                grace=settings.grace,
                interval=settings.sweep_interval_seconds,
                lease=timedelta(seconds=settings.expiry_lease_seconds),
                reconcile_every=settings.reconcile_interval_seconds,
                metrics=metrics,
            ),
            sockets=SocketRegistry(
                accept_rate=settings.ws_accept_rate_per_second,
                accept_burst=settings.ws_accept_burst,
                greetings=settings.ws_greeting_concurrency,
                greeting_wait=settings.ws_greeting_wait_seconds,
            ),
            oidc=OidcSignIn(settings=settings, db=db, redis=redis, keys=keys, tokens=tokens)
            if settings.oidc_enabled
            else None,
        )

    async def start(self) -> None:
        async with self.db() as s:
            await check_durability(s)
        await self.sync_clock()
        self.tasks = [
            asyncio.create_task(self.bus.run(), name="bus"),
            asyncio.create_task(self.sweeper.run(), name="sweeper"),
            asyncio.create_task(self._clock_loop(), name="clock"),
            asyncio.create_task(watch_loop(self.metrics.loop_lag.observe), name="loop watch"),
            asyncio.create_task(self._recheck_loop(), name="token recheck"),
        ]
        self.gc_watch.install()

    async def stop(self) -> None:
        """Shut down in bounded steps: a stuck step is logged by name and skipped, so a worker
        always exits (an orchestrator would kill it anyway) and the log says what hung."""
        self.draining = True
        await _bounded("close sockets", self.sockets.close_all(code=1012, reason="restarting"))
        self.gc_watch.remove()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            await _bounded(f"stop {task.get_name()}", _finished(task))
        await _bounded("close pub/sub", self.bus.close())
        await _bounded("close redis", self.redis.aclose())
        await _bounded("close database", self.engine.dispose())

    async def sync_clock(self) -> None:
        async with self.db() as s:
            sent = self.clock.wall()
            database_now = await db_now(s)
            received = self.clock.wall()
        self.clock.calibrate(sent=sent, received=received, database_now=database_now)

    async def _clock_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.clock_sync_interval_seconds)
            try:
                await self.sync_clock()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("clock sync with the database failed", exc_info=True)

    async def _recheck_loop(self) -> None:
        """Close the open sockets whose user's tokens were revoked (or who was disabled)
        since they opened: a token cannot be recalled, so its sockets are re-checked."""
        while True:
            await asyncio.sleep(self.settings.token_recheck_seconds)
            try:
                await self.recheck_sockets()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("re-checking the sockets' tokens failed", exc_info=True)

    async def recheck_sockets(self) -> int:
        """One re-check of every open socket's token; how many were closed."""
        open_sockets = [c for c in self.sockets if c.principal is not None]
        current = await self.revocations.current(c.who.user_id for c in open_sockets)
        revoked = [c for c in open_sockets if current.get(c.who.user_id) != c.who.token_version]
        for connection in revoked:
            connection.revoke()
        return len(revoked)

    async def readiness(self) -> dict[str, bool]:
        """What /readyz reports: each dependency answers, and the loops are alive."""
        limit = self.settings.readiness_timeout_seconds

        async def database() -> bool:
            async with self.db() as s:
                await s.execute(text("SELECT 1"))
            return True

        async def redis() -> bool:
            return bool(await self.redis.ping())

        # Both at once, each bounded: a load balancer asks often and must get an answer while
        # a dependency hangs, not a connection closed after its own timeout.
        database_up, redis_up = await asyncio.gather(
            _answers("database", database(), limit), _answers("redis", redis(), limit)
        )
        checks = {"database": database_up, "redis": redis_up}
        checks["pubsub"] = self.bus.healthy
        checks["sweeper"] = self.sweeper.healthy
        checks["draining"] = self.draining
        return checks


async def _answers(name: str, check: Coroutine[Any, Any, bool], seconds: float) -> bool:
    """The check's verdict, or False once `seconds` pass. Not `wait_for`: it waits for the
    cancelled check to clean up, and a session on a dropped link takes its own statement
    timeout to give up; the cancelled check finishes in the background instead."""
    task = asyncio.create_task(check)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        _LINGERING.add(task)  # held until it ends (the loop keeps only weak references)
        task.add_done_callback(_quietly)
        log.warning("readiness: %s did not answer within %.1fs", name, seconds)
        return False
    try:
        return task.result()
    except Exception:
        log.warning("readiness: %s check failed", name, exc_info=True)
        return False


_LINGERING: set[asyncio.Task[Any]] = set()


def _quietly(task: asyncio.Task[Any]) -> None:
    _LINGERING.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def _finished(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _bounded(step: str, pending: Awaitable[object], seconds: float = 5.0) -> None:
    """Not `asyncio.wait_for`: on a timeout it cancels the step and then waits for the
    cancellation to finish, so a step that does not heed it (a driver's thread) held the whole
    shutdown until the server's own limit killed it. A stuck step is cancelled and left."""
    task: asyncio.Task[object] = asyncio.ensure_future(pending)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        _LINGERING.add(task)
        task.add_done_callback(_quietly)
        log.error("shutdown step %r took over %.0fs; skipped", step, seconds)
        return
    if not task.cancelled() and task.exception() is not None:
        log.warning("shutdown step %r failed", step, exc_info=task.exception())
