"""The baseline bench.fanout compares with: python-socketio with its AsyncRedisManager, the usual
way to fan Socket.IO events out across several Python workers.

It does what a fan-out needs and nothing more: a client `join`s a room; a `notice` sent by a
client is stamped with the server's time and emitted to its room, which AsyncRedisManager
publishes on Redis so that every worker delivers it to the room's sockets it holds. There is no
storage, no resume and no authentication: the figures it gives are what fan-out alone costs.

    uvicorn --factory bench.socketio_app:create_app --port 8001   # ws://…/api/v1/socket.io/

Environment: BENCH_REDIS_URL (redis://127.0.0.1:6379/14), BENCH_SOCKETIO_CHANNEL (socketio).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import socketio  # type: ignore[import-untyped]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def readyz(scope: Scope, receive: Receive, send: Send) -> None:
    """What LocalCluster waits for before it starts nginx; everything else is Socket.IO's."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    found = scope["type"] == "http" and scope["path"] == "/readyz"
    await send(
        {
            "type": "http.response.start",
            "status": 200 if found else 404,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok" if found else b""})


def create_app() -> socketio.ASGIApp:
    manager = socketio.AsyncRedisManager(
        os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        channel=os.environ.get("BENCH_SOCKETIO_CHANNEL", "socketio"),
    )
    server = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        transports=["websocket"],  # as our clients: no long-polling, so no sticky sessions
        cors_allowed_origins=[],
    )

    @server.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, room: str) -> bool:
        await server.enter_room(sid, room)
        return True

    @server.on("notice")  # type: ignore[untyped-decorator]
    async def notice(sid: str, data: dict[str, Any]) -> None:
        data["at"] = datetime.now(UTC).isoformat()
        await server.emit("notice", data, room=data["room"])

    # Under /api/v1/ so deploy/nginx.conf proxies its WebSockets as it does ours.
    return socketio.ASGIApp(server, other_asgi_app=readyz, socketio_path="api/v1/socket.io")
