"""The attempt WebSocket, `/api/v1/attempts/{id}/ws`.

One `AttemptConnection` per socket: authenticate at the handshake (ticket) or by a first `auth`
message, become the attempt's one live connection (superseding any older one on any worker), send
the full state, then serve messages. All sends go through one bounded queue and one writer task,
so replies and bus events keep their order and a slow client cannot slow anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from delivery_service.api import protocol as p
from delivery_service.api.errors import validation_details
from delivery_service.api.ratelimit import TokenBucket
from delivery_service.domain.errors import DomainError
from delivery_service.domain.timing import TimerView
from delivery_service.live.bus import RESYNC, Event, parse_event_id
from delivery_service.live.keys import attempt_channel
from delivery_service.schemas import AttemptView, Completion, Timer, UserOut
from delivery_service.services.security import Principal

if TYPE_CHECKING:
    from delivery_service.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter()

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


class SupersededError(DomainError):
    code = "superseded"


class SocketRegistry:
    """This worker's open sockets, so a draining worker can tell each to reconnect elsewhere."""

    def __init__(self) -> None:
        self._open: set[AttemptConnection] = set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, connection: AttemptConnection) -> None:
        self._open.add(connection)

    def discard(self, connection: AttemptConnection) -> None:
        self._open.discard(connection)

    async def close_all(self, *, code: int, reason: str) -> None:
        for connection in list(self._open):
            connection.close(code, reason)
        for connection in list(self._open):
            await connection.closed()


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """CORS does not cover WebSockets: accept the page's own host or an exact allow-list entry.
    Non-browser clients send no Origin and cannot be tricked into cross-site requests."""
    origin = websocket.headers.get("origin")
    if origin is None or origin in allowed:
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")


@router.websocket("/attempts/{attempt_id}/ws")
async def attempt_socket(websocket: WebSocket, attempt_id: uuid.UUID) -> None:
    runtime: Runtime = websocket.app.state.runtime
    await AttemptConnection(websocket, runtime, attempt_id).serve()


class AttemptConnection:
    def __init__(self, websocket: WebSocket, runtime: Runtime, attempt_id: uuid.UUID) -> None:
        self.ws = websocket
        self.rt = runtime
        self.attempt_id = attempt_id
        self.channel = attempt_channel(str(attempt_id))
        self.id = secrets.token_hex(8)
        self.principal: Principal | None = None
        settings = runtime.settings
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=settings.ws_send_queue_size)
        self._bucket = TokenBucket(rate=settings.ws_rate_per_second, burst=settings.ws_rate_burst)
        self._violations: list[float] = []
        self._completed_sent = False
        # While this socket's own end_assessment runs, the bus copy of the completion waits here:
        # the reply carries it (with `re`); the copy is sent only if the submit fails.
        self._ending = False
        self._held_completion: Event | None = None
        self._closing = False
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- life cycle -------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            await self._serve()
        finally:
            self._done.set()

    async def _serve(self) -> None:
        settings = self.rt.settings
        if self.rt.draining:
            # Accept, then close with "service restart": a clear reconnect-elsewhere signal,
            # where a refused handshake would look like an authentication failure.
            await self.ws.accept()
            await self.ws.close(code=CLOSE_RESTART)
            return
        if not origin_allowed(self.ws, settings.allowed_origins):
            await self.ws.close(code=CLOSE_POLICY)
            return
        ticket = self.ws.query_params.get("ticket")
        if ticket is not None:
            claims = await self.rt.tickets.redeem(ticket)
            bound = claims.get("attempt_id") if claims else None
            if claims is None or bound not in (None, str(self.attempt_id)):
                await self.ws.close(code=CLOSE_UNAUTHORIZED)
                return
            self.principal = Principal.from_claims(claims)
        await self.ws.accept()
        if self.principal is None:
            self.principal = await self._first_message_auth()
            if self.principal is None:
                return
        try:
            view = await self.rt.attempts.get(self.principal, self.attempt_id)
        except DomainError as exc:
            await self._reject(exc.code, exc.message, CLOSE_NOT_FOUND)
            return
        if view.user_id != self.principal.user_id:
            await self._reject(
                "forbidden", "only the candidate may open this socket", CLOSE_FORBIDDEN
            )
            return
        self.rt.sockets.add(self)
        writer = asyncio.create_task(self._writer(), name=f"ws-writer-{self.id}")
        try:
            async with self.rt.bus.subscribe(self.channel, self._on_event):
                await self._take_ownership()
                await self._greet()
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
            with contextlib.suppress(Exception):
                await self.rt.owners.release(str(self.attempt_id), self._user_id, self.id)

    @property
    def _user_id(self) -> str:
        assert self.principal is not None
        return str(self.principal.user_id)

    async def closed(self) -> None:
        await self._done.wait()

    def close(self, code: int, reason: str) -> None:
        """Ask the writer to close after what is queued; safe to call more than once."""
        if self._closing:
            return
        self._closing = True
        self._force_put((_CLOSE, code, reason))

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
            parsed = p.client_message.validate_json(message.get("text") or "")
            if not isinstance(parsed, p.Auth):
                raise ValueError("the first message must be auth")
            return self.rt.tokens.verify(parsed.data.token)
        except (ValidationError, ValueError, jwt.InvalidTokenError) as exc:
            await self._reject("unauthorized", f"authentication failed: {exc}")
            return None

    async def _reject(self, code: str, message: str, close_code: int = CLOSE_UNAUTHORIZED) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send_text(
                self._dump(p.Error(data=p.ErrorData(code=code, message=message)))
            )
            await self.ws.close(code=close_code)

    async def _take_ownership(self) -> None:
        previous = await self.rt.owners.take(str(self.attempt_id), self._user_id, self.id)
        if previous is not None:
            await self.rt.bus.publish(self.channel, "superseded", {"connection_id": previous})

    async def _greet(self) -> None:
        assert self.principal is not None
        recovered: bool | None = None
        missed: list[Event] = []
        last = self.ws.query_params.get("last_event_id")
        if last:
            position = parse_event_id(last)
            if position is not None:
                recovered, missed = await self.rt.bus.replay(self.channel, *position)
            else:
                recovered = False
        user = UserOut(
            id=self.principal.user_id, username=self.principal.username, role=self.principal.role
        )
        await self._send(
            p.AuthSuccess(
                data=p.AuthSuccessData(
                    user=user,
                    attempt_id=self.attempt_id,
                    connection_id=self.id,
                    recovered=recovered,
                )
            )
        )
        for event in missed:
            self._on_event(event)
        await self._send_state()

    async def _send_state(self, re: str | None = None) -> AttemptView:
        assert self.principal is not None
        view = await self.rt.attempts.get(self.principal, self.attempt_id)
        await self._send(p.AttemptState(re=re, data=view))
        await self._send(p.TimerMessage(data=p.TimerData(state=view.state, timer=view.timer)))
        return view

    # ---- reading ----------------------------------------------------------------------------

    async def _reader(self) -> None:
        settings = self.rt.settings
        while not self._closing:
            try:
                message = await asyncio.wait_for(
                    self.ws.receive(), timeout=settings.ws_heartbeat_timeout_seconds
                )
            except TimeoutError:
                await self._error("heartbeat_timeout", "no message for too long; reconnect")
                self.close(CLOSE_HEARTBEAT, "heartbeat timeout")
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
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
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            await self._violation("invalid_json", f"not JSON: {exc.msg}")
            return
        msg_id = body.get("id") if isinstance(body, dict) else None
        re = msg_id if isinstance(msg_id, str) and len(msg_id) <= 64 else None
        if not isinstance(body, dict) or body.get("type") not in p.CLIENT_TYPES:
            kind = body.get("type") if isinstance(body, dict) else None
            await self._violation("unknown_type", f"unknown message type {kind!r}", re=re)
            return
        try:
            message = p.client_message.validate_json(raw)
        except ValidationError as exc:
            await self._violation(
                "invalid_message",
                f"invalid {body['type']} message",
                re=re,
                details=validation_details(exc.errors()),
            )
            return
        try:
            await self._dispatch(message)
        except DomainError as exc:
            await self._error(exc.code, exc.message, re=message.id, details=exc.details)
            if isinstance(exc, SupersededError):
                self._supersede()
        except Exception:
            log.exception("socket handler failed on %s", body["type"])
            await self._error("internal_error", "the server failed; retry", re=message.id)

    async def _violation(
        self,
        code: str,
        message: str,
        *,
        re: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Answer bad input with an error; close only when it keeps coming (abuse, not accident)."""
        await self._error(code, message, re=re, details=details)
        now = time.monotonic()
        self._violations = [t for t in self._violations if now - t < 60] + [now]
        if len(self._violations) > self.rt.settings.ws_max_violations:
            self.close(CLOSE_POLICY, "too many invalid messages")

    async def _dispatch(self, message: Any) -> None:
        assert self.principal is not None
        who, ident, svc = self.principal, self.attempt_id, self.rt.attempts
        re = message.id
        match message:
            case p.Heartbeat():
                await self._ensure_owner()
                await self._send(p.Pong(re=re, data=p.PongData(server_now=self.rt.clock.now())))
            case p.Ping():
                timer, state = await self._timer()
                data = p.TimerData(state=state, timer=timer, client_time=message.data.client_time)
                await self._send(p.TimerMessage(re=re, data=data))
            case p.GetProgress():
                await self._send(p.ProgressUpdate(re=re, data=await svc.progress(who, ident)))
            case p.GetQuestion():
                await self._ensure_owner()
                index = message.data.index
                current = (
                    await svc.navigate(who, ident, index)
                    if index is not None
                    else await svc.current(who, ident)
                )
                await self._send(p.Question(re=re, data=current))
            case p.StartAssessment():
                await self._ensure_owner()
                view = await svc.get(who, ident)
                if view.state == "not_started":
                    view = await svc.start(who, ident)
                # Starting a running attempt (a reconnecting client) answers with its state.
                await self._send(p.AssessmentStarted(re=re, data=view))
                if view.state == "in_progress":
                    await self._send(p.Question(data=await svc.current(who, ident)))
            case p.SubmitAnswer():
                await self._ensure_owner()
                ack = await svc.save_answer(
                    who,
                    ident,
                    item_id=message.data.item_id,
                    response=message.data.response,
                    client_seq=message.data.client_seq,
                    connection_id=self.id,
                )
                await self._send(p.AnswerFeedback(re=re, data=ack))
            case p.Navigate():
                await self._ensure_owner()
                current = await svc.navigate(who, ident, message.data.to)
                await self._send(p.Question(re=re, data=current))
            case p.FlagItem():
                await self._ensure_owner()
                flag = await svc.flag(who, ident, message.data.item_id, message.data.flagged)
                await self._send(p.FlagSaved(re=re, data=flag))
            case p.EndAssessment():
                await self._ensure_owner()
                self._ending = True
                try:
                    completion = await svc.submit(who, ident)
                except DomainError:
                    self._release_held_completion()
                    raise
                finally:
                    self._ending = False
                self._held_completion = None
                self._completed_sent = True
                await self._send(p.AssessmentCompleted(re=re, data=completion))
            case p.Auth():
                await self._error("already_authenticated", "this socket is authenticated", re=re)

    async def _ensure_owner(self) -> None:
        """Refresh presence; a socket that lost ownership (a missed pub/sub message) leaves now.

        Fails open: with Redis unreachable the write goes ahead, because saving a candidate's
        answer matters more than the two-tab guard, and the database keeps every write in order.
        """
        try:
            owned = await self.rt.owners.refresh(str(self.attempt_id), self._user_id, self.id)
        except RedisError:
            log.warning("ownership check skipped: Redis unavailable", exc_info=True)
            return
        if not owned:
            raise SupersededError("this connection was superseded by a newer one")

    async def _timer(self) -> tuple[Timer, str | None]:
        """Answer pings from the Redis timer key when it is there; the database otherwise."""
        assert self.principal is not None
        deadline_ms = await self.rt.timers.deadline_ms(str(self.attempt_id))
        now = self.rt.clock.now()
        if deadline_ms is not None:
            deadline = datetime.fromtimestamp(deadline_ms / 1000, UTC)
            remaining = max(int((deadline - now).total_seconds() * 1000), 0)
            return Timer.of(TimerView(deadline, now, remaining, running=True)), "in_progress"
        progress = await self.rt.attempts.progress(self.principal, self.attempt_id)
        return progress.timer, progress.state

    # ---- events from the bus ----------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """Called by the bus for every event of this attempt's channel; must not block."""
        if event.type == RESYNC:
            self._spawn(self._send_state())
        elif event.type == "superseded":
            if event.data.get("connection_id") == self.id:
                self._supersede()
        elif event.type == "timer":
            data = p.TimerData.model_validate(event.data)
            self._push(p.TimerMessage(seq=event.event_id, data=data))
        elif event.type == "assessment_completed":
            if self._ending:
                self._held_completion = event
            else:
                self._forward_completion(event)

    def _supersede(self) -> None:
        if not self._closing:
            self._push(p.Superseded())
            self.close(CLOSE_SUPERSEDED, "superseded")

    def _forward_completion(self, event: Event) -> None:
        if not self._completed_sent:
            self._completed_sent = True
            data = Completion.model_validate(event.data)
            self._push(p.AssessmentCompleted(seq=event.event_id, data=data))

    def _release_held_completion(self) -> None:
        held, self._held_completion = self._held_completion, None
        if held is not None:
            self._forward_completion(held)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- writing ----------------------------------------------------------------------------

    async def _error(
        self,
        code: str,
        message: str,
        *,
        re: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self._send(
            p.Error(re=re, data=p.ErrorData(code=code, message=message, details=details))
        )

    async def _send(self, message: BaseModel) -> None:
        if not self._closing:
            await self._queue.put(self._dump(message))

    def _push(self, message: BaseModel) -> None:
        """Enqueue without waiting; a socket that cannot keep up is closed (it will catch up by
        event id when it reconnects) instead of slowing the bus for everyone."""
        if self._closing:
            return
        try:
            self._queue.put_nowait(self._dump(message))
        except asyncio.QueueFull:
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
        return message.model_dump_json(exclude_none=False)

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
