"""A limit on REST request bodies, answered in the API's error shape.

Without one, any client could make a worker parse a body of any size (a 10 MB "answer" was
parsed). Starlette's own limiter answers a plain-text 413, and a limit hit while the framework
reads the body turns into its 400; so this one reads the body itself before the route runs
(routes read JSON bodies whole anyway), refusing from Content-Length before reading when it
can. Some routes (a QTI package upload) have a larger limit of their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A client still sending when the answer comes sees its connection reset instead of the 413,
# so the rest of a refused body is read and dropped (never parsed nor kept), up to this much.
DRAIN_BYTES = 32 * 1024 * 1024


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit: int, by_path: Mapping[str, int]) -> None:
        self.app = app
        self.limit = limit
        self.by_path = dict(by_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.by_path.get(scope["path"], self.limit)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _drain(receive)
            await _refuse(send, limit)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                await self.app(scope, _replaying(message, receive), send)
                return
            body += message.get("body", b"")
            if len(body) > limit:
                if message.get("more_body"):
                    await _drain(receive)
                await _refuse(send, limit)
                return
            if not message.get("more_body"):
                break
        whole = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replaying(whole, receive), send)


def _replaying(first: Message, receive: Receive) -> Receive:
    """`first`, then whatever else the client sends (a disconnect)."""
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _drain(receive: Receive) -> None:
    dropped = 0
    while dropped <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body"):
            return


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {"error": {"code": "payload_too_large",
                   "message": f"the request body is larger than {limit} bytes"}}
    ).encode()  # fmt: skip
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
