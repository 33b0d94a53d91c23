"""One WebSocket connection's traffic: a reader that enforces the limits, and one writer.

The reader checks each message's size and rate, parses and validates it against the socket's
protocol and hands it to `dispatch`; it closes a socket whose client fell silent past the
heartbeat timeout, and one whose invalid messages keep coming. Everything sent goes through one
bounded queue drained by one writer task, so replies and events keep their order and a slow
client cannot slow anyone else: when its queue is full it is closed, and catches up by event id
when it reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Hashable
from typing import Any

from fastapi import WebSocket
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import from_json
from starlette.websockets import WebSocketDisconnect, WebSocketState

from delivery_service.api.errors import (
    REFUSED_DATA,
    UNAVAILABLE,
    refused_data,
    unavailable_code,
    validation_details,
)
from delivery_service.api.ws import messages as p
from delivery_service.api.ws.codes import (
    CLOSE_HEARTBEAT,
    CLOSE_OVERLOADED,
    CLOSE_POLICY,
    CLOSE_SUPERSEDED,
)
from delivery_service.api.ws.ownership import SupersededError
from delivery_service.domain.errors import DomainError
from delivery_service.domain.token_bucket import TokenBucket
from delivery_service.live.bus import Event
from delivery_service.runtime import Runtime

log = logging.getLogger(__name__)

_CLOSE = object()


class Connection:
    """The base of every socket of ours; `lifecycle.LiveConnection` adds the handshake,
    admission and greeting around it."""

    adapter: TypeAdapter[Any]
    client_types: frozenset[str]

    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        self.ws = websocket
        self.rt = runtime
        self.id = secrets.token_hex(8)
        settings = runtime.settings
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=settings.ws_send_queue_size)
        self._bucket = TokenBucket(
            rate=settings.ws_rate_per_second, burst=settings.ws_rate_burst, clock=time.monotonic
        )
        self._violations: list[float] = []
        self._closing = False
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def dispatch(self, message: Any) -> None:
        raise NotImplementedError

    async def closed(self) -> None:
        await self._done.wait()

    def close(self, code: int, reason: str) -> None:
        """Ask the writer to close after what is queued; safe to call more than once."""
        if self._closing:
            return
        self._closing = True
        self._force_put((_CLOSE, code, reason))

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
