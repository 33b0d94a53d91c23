"""The application factory: `create_app(settings)` builds everything in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from delivery_service.api import errors
from delivery_service.api.body_limit import BodyLimit
from delivery_service.api.routes import (
    attempts,
    auth,
    bank,
    classes,
    grading,
    health,
    integrity,
    oidc,
    sessions,
    tests,
    user_import,
    users,
)
from delivery_service.api.ws.attempt import router as attempt_socket_router
from delivery_service.api.ws.session import router as session_socket_router
from delivery_service.logs import bound, configure_logging, request_id
from delivery_service.runtime import Runtime
from delivery_service.settings import Settings
from test_assembly.qti.safe import MAX_TOTAL_BYTES

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
WEB = Path(__file__).with_name("web")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(settings)
        app.state.runtime = runtime
        await runtime.start()
        log.info("worker %s ready", runtime.worker_id)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="examserver",
        version="0.1.0",
        description="A Redis-backed, horizontally scaled, real-time exam server.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(RequestIds)
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        by_path={
            f"{API_PREFIX}/qti/import": MAX_TOTAL_BYTES + 1,
            f"{API_PREFIX}/users/import": settings.import_max_bytes,
        },
    )
    api = APIRouter(prefix=API_PREFIX, responses=errors.ERROR_RESPONSES)
    api.include_router(user_import.router)  # before users: /users/import is not a user id
    for module in (auth, users, tests, bank, attempts, grading, classes, sessions, integrity):
        api.include_router(module.router)
    api.include_router(oidc.router)
    api.include_router(attempt_socket_router)
    api.include_router(session_socket_router)
    app.include_router(api)
    app.include_router(health.router)

    @app.get("/console", include_in_schema=False)
    async def console() -> RedirectResponse:
        return RedirectResponse("/console/")

    app.mount("/console", StaticFiles(directory=WEB / "console", html=True), name="console")
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    app.mount("/app", StaticFiles(directory=WEB / "app"), name="app")

    @app.get("/", include_in_schema=False)
    async def candidate_app() -> FileResponse:
        """The candidate app: one page, its state in the URL (`?attempt=…`)."""
        return FileResponse(WEB / "app" / "index.html")

    return app


def create_app_from_env() -> FastAPI:
    """The uvicorn factory target: settings come from EXAMSERVER_* variables."""
    settings = Settings()
    configure_logging(json_lines=settings.log_format == "json")
    return create_app(settings)


class RequestIds:
    """Every request and socket gets an id (the caller's X-Request-ID, or a new one), bound to its
    log lines and echoed in the response, so one request can be found in every worker's logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = request_id(headers.get(b"x-request-id", b"").decode("latin-1") or None)
        if scope["type"] == "websocket":
            # Its messages pass `send` by the thousand; only HTTP replies carry the header.
            with bound(request_id=rid):
                await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        with bound(request_id=rid):
            await self.app(scope, receive, send_with_id)
