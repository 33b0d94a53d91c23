"""A TCP proxy in front of PostgreSQL, Redis or a worker that a test can break on purpose.

A worker reaches its database or Redis through the proxy (or a client reaches a worker through
it); the test then makes the link behave as a bad day would: `refuse` (the server is down: open
links reset, new ones refused), `blackhole` (a firewall drops every packet: links stay open and
nothing comes back, as with iptables DROP — not even a FIN), `hold` one direction (the replies
never arrive; what was held back stays readable in `withheld`), `slow` (a link with latency:
every chunk arrives that much later than it was sent, in order), and `restore`. The process
behind it sees exactly what it would see from the network; nothing in it is patched.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from datetime import UTC, datetime
from typing import Literal

Mode = Literal["pass", "refuse", "blackhole"]
#: to_target: what the client sends (queries, commands, requests); to_client: the replies
Direction = Literal["to_target", "to_client"]
DIRECTIONS: tuple[Direction, Direction] = ("to_target", "to_client")

_POLL = 0.02


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.delay = 0.0  # seconds of latency added both ways (see `slow` for one way)
        self.delays: dict[Direction, float] = dict.fromkeys(DIRECTIONS, 0.0)
        self.held: set[Direction] = set()
        self.withheld: dict[Direction, bytearray] = {d: bytearray() for d in DIRECTIONS}
        #: when each chunk was handed on (wall clock) and its size: what the far end received when
        self.delivered: dict[Direction, list[tuple[datetime, int]]] = {d: [] for d in DIRECTIONS}
        self.port = 0
        self.links = 0  # connections accepted so far
        self._server: asyncio.Server | None = None
        self._sock: socket.socket | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._upstream: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Listen on a loopback port of our own (kept across `refuse`, so the address the
        worker was given stays the same) and return it."""
        if self._sock is None:
            self._sock = self._bind()
        self._server = await asyncio.start_server(self._accept, sock=self._sock)
        return self.port

    def _bind(self) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        return sock

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop_accepting(self) -> None:
        """New connections are refused from now on; open links carry on (so a server's own
        goodbye, e.g. PostgreSQL's "terminating connection", still reaches the client)."""
        if self._server is not None:
            self._server.close()
            self._server = None
            # The listening socket goes with the server: reconnects are refused (RST).
            self._sock = None

    async def refuse(self) -> None:
        """As if the server stopped: every open link is reset, new connections are refused."""
        self.mode = "refuse"
        self.stop_accepting()
        self.cut()

    def blackhole(self) -> None:
        """As if a firewall dropped every packet: nothing more is forwarded either way (data,
        and a closing peer's FIN alike), and new connections are accepted but never answered."""
        self.mode = "blackhole"

    def hold(self, direction: Direction) -> None:
        """Stop forwarding one direction: what is sent that way waits (and is copied to
        `withheld[direction]`) until `restore`, or is lost with the link on `cut`."""
        self.held.add(direction)

    def slow(self, seconds: float, direction: Direction | None = None) -> None:
        """Add latency: each chunk is delivered `seconds` after the proxy received it."""
        for way in (direction,) if direction else DIRECTIONS:
            self.delays[way] = seconds

    async def restore(self) -> None:
        self.mode = "pass"
        self.delay = 0.0
        self.delays = dict.fromkeys(DIRECTIONS, 0.0)
        self.held.clear()
        if self._server is None:
            # Rebind the same port (SO_REUSEADDR), so the worker's settings still point here.
            self._sock = self._bind()
            self._server = await asyncio.start_server(self._accept, sock=self._sock)

    def upstream_ports(self) -> list[int]:
        """The local ports of the open links to the target: how the target (e.g. PostgreSQL's
        pg_stat_activity.client_port) tells this proxy's connections from everyone else's."""
        ports = []
        for writer in self._upstream:
            with contextlib.suppress(Exception):
                ports.append(int(writer.get_extra_info("sockname")[1]))
        return ports

    def cut(self) -> None:
        """Reset every open link now (a server restart, a killed connection)."""
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    # SO_LINGER 0: close with RST, as a crashed peer's kernel would.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                writer.close()
        self._writers.clear()
        self._upstream.clear()

    async def close(self) -> None:
        self.mode = "refuse"
        self.stop_accepting()
        self.cut()
        # Reset links end on their own; only a straggler is cancelled (asyncio logs a
        # cancelled connection handler as an error).
        if self._links:
            _, stragglers = await asyncio.wait(list(self._links), timeout=2)
            for task in stragglers:
                task.cancel()
            for task in stragglers:
                with contextlib.suppress(BaseException):
                    await task

    def _stopped(self, direction: Direction) -> bool:
        return self.mode == "blackhole" or direction in self.held

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._links.add(task)
        self._writers.add(writer)
        self.links += 1
        try:
            if self.mode == "refuse":
                return
            while self.mode == "blackhole" and not writer.is_closing():
                await asyncio.sleep(_POLL)  # accepted, never answered
            if writer.is_closing():
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            self._writers.add(up_writer)
            self._upstream.add(up_writer)
            try:
                await asyncio.gather(
                    self._pump(reader, up_writer, "to_target"),
                    self._pump(up_reader, writer, "to_client"),
                )
            finally:
                self._writers.discard(up_writer)
                self._upstream.discard(up_writer)
                up_writer.close()
        finally:
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._links.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction
    ) -> None:
        """Copy one direction. Reading and delivering are apart, so latency is a delay per
        chunk from when it arrived (not a queue that grows by the delay at every chunk), and a
        held or blackholed direction keeps reading what its sender sends (as a kernel would
        take it into its buffers) without delivering it."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def receive() -> None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
                while True:
                    data = await reader.read(65536)
                    if self._stopped(direction):
                        self.withheld[direction] += data
                    chunks.put_nowait((loop.time(), data))
                    if not data:
                        return
            chunks.put_nowait((loop.time(), b""))  # a reset ends the link like a FIN

        async def deliver() -> None:
            while True:
                received, data = await chunks.get()
                wait = received + self.delay + self.delays[direction] - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                while self._stopped(direction):
                    if writer.is_closing():
                        return
                    await asyncio.sleep(_POLL)  # dropped packets are never delivered
                if self.mode == "refuse" or writer.is_closing() or not data:
                    return
                writer.write(data)
                self.delivered[direction].append((datetime.now(UTC), len(data)))
                await writer.drain()

        receiving = asyncio.create_task(receive())
        try:
            with contextlib.suppress(ConnectionError, OSError):
                await deliver()
        finally:
            receiving.cancel()
            with contextlib.suppress(BaseException):
                await receiving
            with contextlib.suppress(Exception):
                writer.close()
