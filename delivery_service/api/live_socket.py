"""What every WebSocket of ours shares: the handshake, limits, one writer, bus subscriptions.

A subclass says which messages it accepts (`adapter`, `client_types`), whom it admits (`admit`),
what it says first (`on_open`), how it answers (`dispatch`) and what it makes of bus events
(`on_event`). Everything else is here: authentication at the handshake (a single-use ticket) or by
a first `auth` message within a few seconds, the Origin check, the size and rate limits, the
heartbeat timeout, and one bounded send queue drained by one writer task, so replies and events
keep their order and a slow client cannot slow anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
from fastapi import WebSocket
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import from_json
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from delivery_service.api import protocol as p
from delivery_service.api.errors import (
    REFUSED_DATA,
    UNAVAILABLE,
    refused_data,
    status_for,
    unavailable_code,
    validation_details,
)
from delivery_service.api.ratelimit import TokenBucket
from delivery_service.domain.errors import DomainError
from delivery_service.live.bus import Event, Listener, Reading
from delivery_service.live.follower import Follower
from delivery_service.logs import bind
from delivery_service.services.greeting import Arrival
from delivery_service.services.security import Principal
from integrity import events as ev

if TYPE_CHECKING:
    from delivery_service.runtime import Runtime

log = logging.getLogger(__name__)

# Close codes (documented in docs/api.md).
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_HEARTBEAT = 4408
CLOSE_SUPERSEDED = 4409
CLOSE_POLICY = 1008
CLOSE_OVERLOADED = 1013
CLOSE_RESTART = 1012

_CLOSE = object()

#: the claims that bind a WebSocket ticket to one socket (POST /ws-tickets)
TICKET_SCOPES = ("attempt_id", "session_id")


class SupersededError(DomainError):
    code = "superseded"


class Rejected(Exception):
    """Raised by `admit` to refuse a socket with an error message and a close code."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


class SocketRegistry:
    """This worker's open sockets, so a draining worker can tell each to reconnect elsewhere."""

    def __init__(
        self,
        *,
        accept_rate: float = 200.0,
        accept_burst: int = 400,
        greetings: int = 16,
        greeting_wait: float = 30.0,
    ) -> None:
        self._open: set[LiveConnection] = set()
        # DESIGN §6: a reconnect storm must not starve the sockets already open. Joining costs
        # database and Redis work; past this rate a newcomer is told to come back (1013) before
        # any of it is done, and its backoff with jitter spreads the storm out.
        self._accepts = TokenBucket(rate=accept_rate, burst=accept_burst)
        # And however fast they arrive, only so many are greeted at once (their admission
        # check, join and snapshot read the database): the rest wait for a slot in arrival
        # order (a parked coroutine costs little; a refusal costs a whole new handshake), and
        # only after `greeting_wait` are told to come back. So answers from the sockets already
        # open still find a database connection instead of queueing behind a crowd of greetings.
        self._greetings = asyncio.Semaphore(greetings)
        self._greeting_wait = greeting_wait

    def admit(self) -> bool:
        return self._accepts.take()

    async def greeting(self) -> Callable[[], None] | None:
        """A greeting slot's release (safe to call twice), or None when none came free."""
        try:
            await asyncio.wait_for(self._greetings.acquire(), self._greeting_wait)
        except TimeoutError:
            return None
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._greetings.release()

        return release

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[LiveConnection]:
        return iter(list(self._open))

    def add(self, connection: LiveConnection) -> None:
        self._open.add(connection)

    def discard(self, connection: LiveConnection) -> None:
        self._open.discard(connection)

    async def close_all(self, *, code: int, reason: str) -> None:
        for connection in list(self._open):
            connection.close(code, reason)
        for connection in list(self._open):
            await connection.closed()


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """CORS does not cover WebSockets: accept the page's own origin (scheme and host: a page
    served over https may not open this server's plain-ws socket, nor the other way round) or
    an exact allow-list entry. Non-browser clients send no Origin and cannot be tricked into
    cross-site requests."""
    origin = websocket.headers.get("origin")
    if origin is None or origin in allowed:
        return True
    page = urlsplit(origin)
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return page.scheme == scheme and page.netloc == websocket.headers.get("host")


class LiveConnection:
    adapter: TypeAdapter[Any]
    client_types: frozenset[str]
    #: the ticket claim that binds a ticket to this kind of socket, and the id it must match
    ticket_scope: tuple[str, str] = ("", "")
    #: the `kind` label of this socket in the metrics
    kind = "socket"
    #: true when the ticket was issued to a request that passed the Safe Exam Browser check
    seb_verified: bool = False

    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        self.ws = websocket
        self.rt = runtime
        self.id = secrets.token_hex(8)
        self.principal: Principal | None = None
        settings = runtime.settings
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=settings.ws_send_queue_size)
        self._bucket = TokenBucket(rate=settings.ws_rate_per_second, burst=settings.ws_rate_burst)
        self._violations: list[float] = []
        self._closing = False
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscriptions = contextlib.AsyncExitStack()
        self._subscribed: set[str] = set()
        self._held: list[Follower] = []  # the greeting's followers, until `release_held`

    # ---- what subclasses provide ------------------------------------------------------------

    async def admit(self) -> None:
        """Check the authenticated principal may use this socket; raise Rejected if not."""
        raise NotImplementedError

    async def on_open(self) -> None:
        """Subscribe, take ownership, greet."""
        raise NotImplementedError

    async def dispatch(self, message: Any) -> None:
        raise NotImplementedError

    async def on_close(self) -> None:
        """Clean up after the socket closed (presence, ownership)."""

    # ---- life cycle -------------------------------------------------------------------------

    @property
    def who(self) -> Principal:
        if self.principal is None:  # pragma: no cover - only called after authentication
            raise RuntimeError("socket used before authentication")
        return self.principal

    async def serve(self) -> None:
        try:
            await self._serve()
        finally:
            self._done.set()

    async def _serve(self) -> None:
        if self.rt.draining:
            # Accept, then close with "service restart": a clear reconnect-elsewhere signal,
            # where a refused handshake would look like an authentication failure.
            await self.ws.accept()
            await self.ws.close(code=CLOSE_RESTART)
            return
        if not origin_allowed(self.ws, self.rt.settings.allowed_origins):
            await self.ws.close(code=CLOSE_POLICY)
            return
        if not self.rt.sockets.admit():
            self.rt.metrics.connections_refused.labels("rate").inc()
            await self.ws.accept()
            await self.ws.close(code=CLOSE_OVERLOADED, reason="busy: reconnect shortly")
            return
        ticket = self.ws.query_params.get("ticket")
        if ticket is not None:
            claims = await self.rt.tickets.redeem(ticket)
            if claims is None or not self._ticket_fits(claims):
                await self.ws.close(code=CLOSE_UNAUTHORIZED)
                return
            self.principal = Principal.from_claims(claims)
            # The REST call that issued this ticket passed the Safe Exam Browser check.
            self.seb_verified = bool(claims.get("seb"))
        await self.ws.accept()
        if self.principal is None:
            self.principal = await self._first_message_auth()
            if self.principal is None:
                return
        try:
            valid = await self.rt.revocations.allows(self.principal)
        except Exception as exc:
            if (code := self._unavailable(exc, "token check")) is None:
                raise
            await self._reject(code, UNAVAILABLE[code], CLOSE_OVERLOADED)
            return
        if not valid:  # the user was disabled or their tokens revoked since it was issued
            await self._reject("token_revoked", "this sign-in was revoked; sign in again")
            return
        release = await self.rt.sockets.greeting()
        if release is None:
            self.rt.metrics.connections_refused.labels("busy").inc()
            await self._reject(
                "server_busy", "the server is busy; reconnect shortly", CLOSE_OVERLOADED
            )
            return
        try:
            await self._greet_and_serve(release)
        finally:
            release()

    def _ticket_fits(self, claims: Mapping[str, Any]) -> bool:
        """A ticket bound to a socket (an attempt's or a session's) opens that one only; an
        unbound ticket opens any the user may use."""
        claim, expected = self.ticket_scope
        for scope in TICKET_SCOPES:
            bound = claims.get(scope)
            if bound is not None and (scope != claim or bound != expected):
                return False
        return True

    async def _greet_and_serve(self, release: Callable[[], None]) -> None:
        """Admit, greet (holding a greeting slot until `release`), then serve until closed."""
        try:
            await self.admit()
        except Rejected as exc:
            await self._reject(exc.code, exc.message, exc.close_code)
            return
        except DomainError as exc:
            close = CLOSE_FORBIDDEN if status_for(exc) == 403 else CLOSE_NOT_FOUND
            await self._reject(exc.code, exc.message, close)
            return
        except Exception as exc:
            if (code := self._unavailable(exc, "admit")) is None:
                raise
            await self._reject(code, UNAVAILABLE[code], CLOSE_OVERLOADED)
            return
        self.rt.sockets.add(self)
        self.rt.metrics.sockets_open.labels(self.kind).inc()
        bind(
            connection_id=self.id,
            user_id=self.who.user_id,
            **{f"{self.kind}_id": self.ticket_scope[1]},
        )
        writer = asyncio.create_task(self._writer(), name=f"ws-writer-{self.id}")
        try:
            async with self._subscriptions:
                try:
                    await self.on_open()
                except Exception as exc:
                    if (code := self._unavailable(exc, "greeting")) is None:
                        raise
                    # Busy, not broken: the client reconnects (1013) and resumes by position.
                    await self.error(code, UNAVAILABLE[code])
                    self.close(CLOSE_OVERLOADED, "busy: reconnect shortly")
                    return  # `finally` lets the writer send both, for at most 5 s
                release()
                # The writer ends when we close (superseded, drained, overloaded); the reader
                # when the client leaves. Either one ends the connection.
                reader = asyncio.create_task(self._reader(), name=f"ws-reader-{self.id}")
                await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            self.close(1000, "")
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, timeout=5)
            for task in self._tasks:
                task.cancel()
            self.rt.sockets.discard(self)
            self.rt.metrics.sockets_open.labels(self.kind).dec()
            with contextlib.suppress(Exception):
                await self.on_close()

    async def closed(self) -> None:
        await self._done.wait()

    def close(self, code: int, reason: str) -> None:
        """Ask the writer to close after what is queued; safe to call more than once."""
        if self._closing:
            return
        self._closing = True
        self._force_put((_CLOSE, code, reason))

    async def subscribe(self, channel: str, listener: Callable[[Event], None]) -> None:
        """Deliver a bus channel's events to `listener` until the socket closes."""
        if channel in self._subscribed:
            return
        self._subscribed.add(channel)
        # The position is read before subscribing, so a replay after an outage starts no later
        # than the first event this socket could have missed.
        try:
            position: tuple[str, int] | None = await self.rt.bus.start_position(channel)
        except RedisError:
            position = None  # an outage will then fall back to a snapshot
        follower = Follower(self.rt.bus, channel, listener, self.spawn, position,
                            on_recovery=self._count_recovery)  # fmt: skip
        await self._subscriptions.enter_async_context(self.rt.bus.subscribe(channel, follower))

    async def follow_all(
        self, wanted: Mapping[str, Listener], resume: Mapping[str, tuple[str, int]]
    ) -> dict[str, Reading]:
        """The greeting's subscriptions: all channels subscribed in one command and confirmed,
        then where each stands and what a resuming client missed (`resume`: channel ->
        position) read in one round trip. Their live events wait until `release_held`, after
        the greeting has sent the missed events and the state from the database."""
        followers = {
            channel: Follower(self.rt.bus, channel, listener, self.spawn, None,
                              on_recovery=self._count_recovery, holding=True)
            for channel, listener in wanted.items()
            if channel not in self._subscribed
        }  # fmt: skip
        self._subscribed.update(followers)
        self._held += followers.values()
        pairs = list(followers.items())
        await self._subscriptions.enter_async_context(self.rt.bus.subscribe_all(pairs))
        readings = await self.rt.bus.read(
            list(followers), {c: p for c, p in resume.items() if c in followers}
        )
        for channel, reading in readings.items():
            # Held events up to here are in the state the greeting sends (or were missed and
            # are sent before it): only later ones are delivered.
            followers[channel].position = reading.position
        return readings

    def release_held(self) -> None:
        held, self._held = self._held, []
        for follower in held:
            follower.release()

    def _count_recovery(self, replayed: bool) -> None:
        self.rt.metrics.resyncs.labels("replayed" if replayed else "snapshot").inc()

    async def _first_message_auth(self) -> Principal | None:
        timeout = self.rt.settings.ws_auth_timeout_seconds
        try:
            message = await asyncio.wait_for(self.ws.receive(), timeout=timeout)
        except TimeoutError:
            await self._reject("unauthorized", f"no auth message within {timeout:g}s")
            return None
        if message["type"] == "websocket.disconnect":
            return None
        try:
            parsed = p.Auth.model_validate_json(message.get("text") or "")
            return self.rt.tokens.verify(parsed.data.token)
        except (ValidationError, ValueError, jwt.InvalidTokenError) as exc:
            await self._reject("unauthorized", f"the first message must be a valid auth: {exc}")
            return None

    def _unavailable(self, exc: BaseException, step: str) -> str | None:
        """The retryable code of a busy or unreachable database or Redis (None: a real bug).
        Outside the message loop too, a busy pool must not surface as a server error: the
        framework would try an HTTP reply on the WebSocket and the client would see 1000."""
        code = unavailable_code(exc)
        if code is not None:
            self.rt.metrics.failure("socket", exc)
            log.warning("socket %s during %s: %s", code, step, type(exc).__name__)
        return code

    async def _reject(self, code: str, message: str, close_code: int = CLOSE_UNAUTHORIZED) -> None:
        with contextlib.suppress(Exception):
            error = p.Error(data=p.ErrorData(code=code, message=message))
            await self.ws.send_text(self._dump(error))
            await self.ws.close(code=close_code)

    # ---- ownership: one live socket per user and scope, across all workers --------------------

    async def take_ownership(self, scope: str, channel: str) -> str | None:
        """Become the one live connection; returns the superseded connection's id, if any."""
        previous: str | None = await self.rt.owners.take(scope, str(self.who.user_id), self.id)
        if previous is not None:
            await self.rt.bus.publish(channel, "superseded", {"connection_id": previous})
        return previous

    @property
    def resumed(self) -> bool:
        """The client came back with `last_event_id`: a reconnect, not a first connection."""
        return bool(self.ws.query_params.get("last_event_id"))

    def arrival(self) -> Arrival:
        """What admission needs of this connection: what the integrity ledger records of its
        opening, and what the Safe Exam Browser check reads (skipped when the ticket was
        issued to a request that passed it)."""
        payload = {
            "connection_id": self.id,
            "worker": self.rt.worker_id,
            "user_agent": self.ws.headers.get("user-agent", "")[:200],
        }
        return Arrival(
            resumed=self.resumed,
            payload=payload,
            url=str(self.ws.url),
            headers=self.ws.headers,
            seb_verified=self.seb_verified,
        )

    async def observe_superseded(
        self,
        previous: str | None,
        *,
        attempt_id: uuid.UUID | None,
        session_id: uuid.UUID | None = None,
    ) -> None:
        """The connection this one superseded (another tab or device), for the integrity
        ledger; its own opening is recorded with its admission (services/greeting.py)."""
        if previous is None:
            return
        await self.rt.evidence.observations.record(
            type_=ev.SUPERSEDED,
            candidate_id=self.who.user_id,
            attempt_id=attempt_id,
            session_id=session_id,
            payload={
                "connection_id": self.id,
                "worker": self.rt.worker_id,
                "superseded_connection_id": previous,
            },
        )

    async def ensure_owner(self, scope: str) -> None:
        """Refresh presence; a socket that lost ownership (a missed pub/sub message) leaves now.

        Fails open: with Redis unreachable the write goes ahead, because saving a candidate's
        answer matters more than the two-tab guard, and the database keeps every write in order.
        """
        try:
            owned = await self.rt.owners.refresh(scope, str(self.who.user_id), self.id)
        except RedisError:
            self.rt.metrics.redis_errors.labels("ownership").inc()
            log.warning("ownership check skipped: Redis unavailable", exc_info=True)
            return
        if not owned:
            raise SupersededError("this connection was superseded by a newer one")

    async def release_ownership(self, scope: str) -> bool:
        return await self.rt.owners.release(scope, str(self.who.user_id), self.id)

    def revoke(self) -> None:
        """The user's tokens were revoked (or the user disabled): tell them and close 4401;
        the reader stops before the next message."""
        if not self._closing:
            self.push(p.Error(data=p.ErrorData(code="token_revoked", message="sign in again")))
            self.close(CLOSE_UNAUTHORIZED, "token revoked")

    def supersede(self) -> None:
        if not self._closing:
            self.push(p.Superseded())
            self.close(CLOSE_SUPERSEDED, "superseded")

    # ---- reading ----------------------------------------------------------------------------

    async def _reader(self) -> None:
        settings = self.rt.settings
        while not self._closing:
            try:
                message = await asyncio.wait_for(
                    self.ws.receive(), timeout=settings.ws_heartbeat_timeout_seconds
                )
            except TimeoutError:
                await self.error("heartbeat_timeout", "no message for too long; reconnect")
                self.close(CLOSE_HEARTBEAT, "heartbeat timeout")
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect" or self._closing:
                return  # closing (revoked, superseded, drained): nothing more is processed
            raw = message.get("text")
            if raw is None:
                raw = (message.get("bytes") or b"").decode("utf-8", "replace")
            await self._handle_raw(raw)

    async def _handle_raw(self, raw: str) -> None:
        limit = self.rt.settings.ws_max_message_bytes
        if len(raw.encode()) > limit:
            await self._violation("message_too_large", f"messages are limited to {limit} bytes")
            return
        if not self._bucket.take():
            await self._violation("rate_limited", "too many messages; slow down")
            return
        try:
            # pydantic's parser, not json.loads: it refuses nesting deeper than 200 levels
            # with a ValueError, where json.loads recursed until a RecursionError escaped.
            body = from_json(raw)
        except ValueError as exc:
            if "recursion limit" in str(exc):
                await self._violation("invalid_message", "the message is nested too deeply")
            else:
                await self._violation("invalid_json", f"not JSON: {exc}")
            return
        msg_id = body.get("id") if isinstance(body, dict) else None
        re = msg_id if isinstance(msg_id, str) and len(msg_id) <= 64 else None
        kind = body.get("type") if isinstance(body, dict) else None
        if not isinstance(kind, str) or kind not in self.client_types:  # a list is unhashable
            await self._violation("unknown_type", f"unknown message type {kind!r}", re=re)
            return
        try:
            message = self.adapter.validate_json(raw)
        except ValidationError as exc:
            await self._violation(
                "invalid_message",
                f"invalid {body['type']} message",
                re=re,
                details=validation_details(exc.errors()),
            )
            return
        self.rt.metrics.messages_in.labels(body["type"]).inc()
        if isinstance(message, p.Auth):
            await self.error("already_authenticated", "this socket is authenticated", re=re)
            return
        try:
            await self.dispatch(message)
        except DomainError as exc:
            await self.error(exc.code, exc.message, re=message.id, details=exc.details)
            if isinstance(exc, SupersededError):
                self.supersede()
        except Exception as exc:
            self.rt.metrics.failure("socket", exc)
            code = unavailable_code(exc)
            if code is not None:  # retryable: the client keeps the message and sends it again
                log.warning("socket handler on %s: %s", body["type"], type(exc).__name__)
                await self.error(code, UNAVAILABLE[code], re=message.id)
                return
            if refused_data(exc):
                await self.error("invalid_message", REFUSED_DATA, re=message.id)
                return
            log.exception("socket handler failed on %s", body["type"])
            await self.error("internal_error", "the server failed; retry", re=message.id)

    async def _violation(
        self,
        code: str,
        message: str,
        *,
        re: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Answer bad input with an error; close only when it keeps coming (abuse, not accident)."""
        await self.error(code, message, re=re, details=details)
        now = time.monotonic()
        self._violations = [t for t in self._violations if now - t < 60] + [now]
        if len(self._violations) > self.rt.settings.ws_max_violations:
            self.close(CLOSE_POLICY, "too many invalid messages")

    # ---- writing ----------------------------------------------------------------------------

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def error(
        self,
        code: str,
        message: str,
        *,
        re: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self.send(
            p.Error(re=re, data=p.ErrorData(code=code, message=message, details=details))
        )

    async def send(self, message: BaseModel) -> None:
        if not self._closing:
            self.rt.metrics.message_out(getattr(message, "type", "?"))
            await self._queue.put(self._dump(message))

    def push(self, message: BaseModel) -> None:
        """Enqueue without waiting; a socket that cannot keep up is closed (it will catch up by
        event id when it reconnects) instead of slowing the bus for everyone."""
        self._push_text(self._dump(message), getattr(message, "type", "?"))

    def push_event(self, event: Event, key: Hashable, build: Callable[[], BaseModel]) -> None:
        """Push the message `build` makes of a bus event. Every socket that makes the same sort
        of message of it (`key`) sends the same text, so it is encoded once per worker, not
        once per socket: what fan-out to a room of hundreds costs is mostly this."""
        rendered = event.rendered.get(key)
        if rendered is None:
            message = build()
            rendered = event.rendered[key] = (self._dump(message), getattr(message, "type", "?"))
        self._push_text(*rendered)

    def _push_text(self, text: str, type_: str) -> None:
        if self._closing:
            return
        try:
            self._queue.put_nowait(text)
            self.rt.metrics.message_out(type_)
        except asyncio.QueueFull:
            self.rt.metrics.queue_drops.inc()
            log.warning("socket %s cannot keep up; closing it", self.id)
            self.close(CLOSE_OVERLOADED, "send queue overflow")

    def _force_put(self, item: Any) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()  # make room for the close itself

    @staticmethod
    def _dump(message: BaseModel) -> str:
        return message.model_dump_json()

    async def _writer(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, tuple) and item and item[0] is _CLOSE:
                    _, code, reason = item
                    if self.ws.application_state == WebSocketState.CONNECTED:
                        await self.ws.close(code=code, reason=reason)
                    return
                await self.ws.send_text(item)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
