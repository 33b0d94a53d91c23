"""A worker served from an event loop in a thread of its own, for synchronous drivers
(Hypothesis's state machine, Schemathesis), and a collector of the server's error logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from delivery_service.embedded import Served, running_server
from delivery_service.settings import Settings

T = TypeVar("T")


class ServerThread:
    """The worker, and any coroutine a caller hands it (`run`), on the thread's loop."""

    def __init__(self, settings: Settings, name: str = "chaos-server") -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._worker: contextlib.AsyncExitStack | None = None
        self.served: Served | None = None
        self.restarts = 0

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def url(self) -> str:
        if self.served is None:
            raise RuntimeError("no worker is running")
        return self.served.url

    async def start_worker(self) -> Served:
        stack = contextlib.AsyncExitStack()
        self.served = await stack.enter_async_context(running_server(self.settings))
        self._worker = stack
        return self.served

    async def stop_worker(self) -> None:
        stack, self._worker, self.served = self._worker, None, None
        if stack is not None:
            await stack.aclose()

    async def restart_worker(self) -> None:
        """A worker goes away (its sockets get 1012) and a new one takes over the same
        PostgreSQL and Redis, on another port, with nothing in memory."""
        await self.stop_worker()
        await self.start_worker()
        self.restarts += 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.stop_worker())
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class ServerErrors(logging.Handler):
    """Every log record at ERROR or above: an unhandled exception in a handler is one."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @contextlib.contextmanager
    def installed(self) -> Iterator[ServerErrors]:
        loggers = [logging.getLogger(), logging.getLogger("uvicorn")]  # uvicorn's do not propagate
        for logger in loggers:
            logger.addHandler(self)
        try:
            yield self
        finally:
            for logger in loggers:
                logger.removeHandler(self)

    def take(self) -> list[str]:
        """What was logged since the last take, one line each (and forget it)."""
        found = [f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else
                 f"{r.name}: {r.getMessage()}" for r in self.records]  # fmt: skip
        self.records.clear()
        return found
