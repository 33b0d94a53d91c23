"""The life of every WebSocket of ours, from the handshake to the close.

A subclass says which messages it accepts (`adapter`, `client_types`), whom it admits (`admit`),
what it says first (`on_open`), how it answers (`dispatch`) and what it makes of bus events
(`on_event`). Everything else is here or beside it: authentication at the handshake (a
single-use ticket) or by a first `auth` message within a few seconds, and the Origin check
(handshake.py); the accept rate and the greeting slots (live/sockets.py); one live socket per
user and scope (ownership.py); the bus subscriptions (subscriptions.py); the size and rate
limits, the heartbeat timeout and the one writer (connection.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping

from fastapi import WebSocket

from delivery_service.api.errors import UNAVAILABLE, status_for, unavailable_code
from delivery_service.api.ws import messages as p
from delivery_service.api.ws.codes import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_OVERLOADED,
    CLOSE_POLICY,
    CLOSE_RESTART,
    CLOSE_UNAUTHORIZED,
)
from delivery_service.api.ws.connection import Connection
from delivery_service.api.ws.handshake import (
    Rejected,
    first_message_auth,
    origin_allowed,
    reject,
    ticket_fits,
)
from delivery_service.api.ws.ownership import Ownership
from delivery_service.api.ws.subscriptions import Subscriptions
from delivery_service.domain.errors import DomainError
from delivery_service.domain.principal import Principal
from delivery_service.live.bus import Event, Listener, Reading
from delivery_service.logs import bind
from delivery_service.runtime import Runtime
from delivery_service.security.tokens import principal_from_claims
from delivery_service.services.greeting import Arrival

log = logging.getLogger(__name__)


class LiveConnection(Connection):
    """The base class of the attempt and session sockets: `serve` runs one from its handshake
    to its close; subclasses fill in the hooks below."""

    #: the ticket claim that binds a ticket to this kind of socket, and the id it must match
    ticket_scope: tuple[str, str] = ("", "")
    #: the `kind` label of this socket in the metrics
    kind = "socket"
    #: true when the ticket was issued to a request that passed the Safe Exam Browser check
    seb_verified: bool = False

    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        super().__init__(websocket, runtime)
        self.principal: Principal | None = None
        self.subscriptions = Subscriptions(runtime, self.spawn)
        self.ownership = Ownership(runtime, self.id)

    # ---- what subclasses provide ------------------------------------------------------------

    async def admit(self) -> None:
        """Check the authenticated principal may use this socket; raise Rejected if not."""
        raise NotImplementedError

    async def on_open(self) -> None:
        """Subscribe, take ownership, greet."""
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
            if claims is None or not ticket_fits(claims, self.ticket_scope):
                await self.ws.close(code=CLOSE_UNAUTHORIZED)
                return
            self.principal = principal_from_claims(claims)
            # The REST call that issued this ticket passed the Safe Exam Browser check.
            self.seb_verified = bool(claims.get("seb"))
        await self.ws.accept()
        if self.principal is None:
            self.principal = await first_message_auth(
                self.ws, self.rt.tokens, self.rt.settings.ws_auth_timeout_seconds
            )
            if self.principal is None:
                return
        try:
            valid = await self.rt.revocations.allows(self.principal)
        except Exception as exc:
            if (code := self._unavailable(exc, "token check")) is None:
                raise
            await reject(self.ws, code, UNAVAILABLE[code], CLOSE_OVERLOADED)
            return
        if not valid:  # the user was disabled or their tokens revoked since it was issued
            await reject(self.ws, "token_revoked", "this sign-in was revoked; sign in again")
            return
        release = await self.rt.sockets.greeting()
        if release is None:
            self.rt.metrics.connections_refused.labels("busy").inc()
            await reject(
                self.ws, "server_busy", "the server is busy; reconnect shortly", CLOSE_OVERLOADED
            )
            return
        try:
            await self._greet_and_serve(release)
        finally:
            release()

    async def _greet_and_serve(self, release: Callable[[], None]) -> None:
        """Admit, greet (holding a greeting slot until `release`), then serve until closed."""
        try:
            await self.admit()
        except Rejected as exc:
            await reject(self.ws, exc.code, exc.message, exc.close_code)
            return
        except DomainError as exc:
            close = CLOSE_FORBIDDEN if status_for(exc) == 403 else CLOSE_NOT_FOUND
            await reject(self.ws, exc.code, exc.message, close)
            return
        except Exception as exc:
            if (code := self._unavailable(exc, "admit")) is None:
                raise
            await reject(self.ws, code, UNAVAILABLE[code], CLOSE_OVERLOADED)
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
            async with self.subscriptions:
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

    def _unavailable(self, exc: BaseException, step: str) -> str | None:
        """The retryable code of a busy or unreachable database or Redis (None: a real bug).
        Outside the message loop too, a busy pool must not surface as a server error: the
        framework would try an HTTP reply on the WebSocket and the client would see 1000."""
        code = unavailable_code(exc)
        if code is not None:
            self.rt.metrics.failure("socket", exc)
            log.warning("socket %s during %s: %s", code, step, type(exc).__name__)
        return code

    @property
    def resumed(self) -> bool:
        """The client came back with `last_event_id`: a reconnect, not a first connection."""
        return bool(self.ws.query_params.get("last_event_id"))

    def arrival(self) -> Arrival:
        """What admission needs of this connection: what the integrity ledger records of its
        opening, what the Safe Exam Browser check reads (skipped when the ticket was issued to
        a request that passed it), and the client's address for a test's allowed networks (as
        uvicorn's trusted-proxy setting resolved it)."""
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
            client=self.ws.client.host if self.ws.client else None,
        )

    def revoke(self) -> None:
        """The user's tokens were revoked (or the user disabled): tell them and close 4401;
        the reader stops before the next message."""
        if not self._closing:
            self.push(p.Error(data=p.ErrorData(code="token_revoked", message="sign in again")))
            self.close(CLOSE_UNAUTHORIZED, "token revoked")

    # ---- the greeting: subscriptions and ownership (subscriptions.py, ownership.py) ----------

    async def subscribe(self, channel: str, listener: Callable[[Event], None]) -> None:
        """Deliver a bus channel's events to `listener` until the socket closes."""
        await self.subscriptions.subscribe(channel, listener)

    async def follow_all(
        self, wanted: Mapping[str, Listener], resume: Mapping[str, tuple[str, int]]
    ) -> dict[str, Reading]:
        """The greeting's subscriptions, their live events held until `release_held`."""
        return await self.subscriptions.follow_all(wanted, resume)

    def release_held(self) -> None:
        self.subscriptions.release_held()

    async def take_ownership(self, scope: str, channel: str) -> str | None:
        """Become the one live connection; returns the superseded connection's id, if any."""
        return await self.ownership.take(self.who.user_id, scope, channel)

    async def observe_superseded(
        self,
        previous: str | None,
        *,
        attempt_id: uuid.UUID | None,
        session_id: uuid.UUID | None = None,
    ) -> None:
        """The connection this one superseded, for the integrity ledger."""
        await self.ownership.observe_superseded(
            previous, user_id=self.who.user_id, attempt_id=attempt_id, session_id=session_id
        )

    async def ensure_owner(self, scope: str) -> None:
        """Raise SupersededError if a newer socket took over (see Ownership.ensure)."""
        await self.ownership.ensure(self.who.user_id, scope)

    async def release_ownership(self, scope: str) -> bool:
        return await self.ownership.release(self.who.user_id, scope)
