"""Serve the app inside an event loop that is already running (tests, benchmarks).

uvicorn listens on a socket we bind first, so the port is known before the server starts.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from delivery_service.app import create_app
from delivery_service.settings import Settings

if TYPE_CHECKING:
    from delivery_service.runtime import Runtime


@dataclass
class Served:
    url: str
    app: FastAPI

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime


@asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[Served]:
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        ws_max_size=4 * settings.ws_max_message_bytes,
        ws_per_message_deflate=False,
        lifespan="on",
        # As `examserver serve`: the client address the networks check reads comes from
        # X-Forwarded-For only when a trusted proxy sent it.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield Served(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=60)
        sock.close()
