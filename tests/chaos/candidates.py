"""A candidate that streams answers over the attempt socket and survives its worker dying.

It does what the candidate app does: every answer carries a client_seq; an answer stays pending
until its `answer_feedback` arrives; when the socket dies (a killed worker, a reset link) it
reconnects to another worker and sends every pending answer again with the same client_seq, then
carries on. What it records — sent, acknowledged (with each ack), retried — is what the fault
tests compare with PostgreSQL afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

ITEMS = ("q1", "q2", "q3", "q4")
RETRYABLE = {"database_unavailable", "redis_unavailable", "server_busy"}


class Reconnect(Exception):
    """This connection is over; try again (on another worker)."""


@dataclass(frozen=True)
class Answer:
    seq: int
    item: str
    response: list[str]


@dataclass
class StreamingCandidate:
    token: str
    attempt_id: str
    #: the base URLs of the workers, read at every (re)connect
    workers: Callable[[], list[str]]
    first: int = 0  # index of the worker to connect to first
    window: int = 4  # answers in flight at once
    pace: float = 0.1  # seconds between new answers
    rng: random.Random = field(default_factory=random.Random)
    sent: dict[int, Answer] = field(default_factory=dict)
    acks: dict[int, dict[str, Any]] = field(default_factory=dict)
    resent: int = 0
    connections: int = 0
    refusals: Counter[str] = field(default_factory=Counter)  # retryable error codes seen
    problems: list[str] = field(default_factory=list)  # anything a correct server never says
    _next_seq: int = 1

    @property
    def pending(self) -> list[int]:
        return sorted(set(self.sent) - set(self.acks))

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until `stop`, then until every answer sent is acknowledged."""
        index = self.first
        while not (stop.is_set() and not self.pending):
            urls = self.workers()
            url = urls[index % len(urls)]
            try:
                await self._connection(url, stop)
            except (Reconnect, ConnectionClosed, InvalidHandshake, OSError, TimeoutError,
                    httpx.HTTPError):  # fmt: skip
                index += 1  # the next worker: a load balancer would pick a live one
                await asyncio.sleep(0.05 + self.rng.random() * 0.1)

    async def _ticket(self, url: str) -> str:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            reply = await http.post(
                "/api/v1/ws-tickets",
                json={"attempt_id": self.attempt_id},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        if reply.status_code != 201:
            raise Reconnect(f"ticket: {reply.status_code}")
        return str(reply.json()["ticket"])

    async def _connection(self, url: str, stop: asyncio.Event) -> None:
        ticket = await self._ticket(url)
        ws_url = url.replace("http://", "ws://")
        address = f"{ws_url}/api/v1/attempts/{self.attempt_id}/ws?ticket={ticket}"
        async with websockets.connect(address, open_timeout=5, compression=None) as ws:
            await self._greeting(ws)
            self.connections += 1
            in_flight: dict[str, int] = {}
            reader = asyncio.create_task(self._read(ws, in_flight))
            try:
                await self._send_all(ws, stop, in_flight, reader)
            finally:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader

    async def _greeting(self, ws: websockets.ClientConnection) -> None:
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "error":
                    code = message["data"]["code"]
                    self._refused(code)
                    raise Reconnect(code)
                if message["type"] == "timer":  # after auth_success and attempt_state
                    return

    async def _send_all(
        self,
        ws: websockets.ClientConnection,
        stop: asyncio.Event,
        in_flight: dict[str, int],
        reader: asyncio.Task[None],
    ) -> None:
        resend = self.pending  # what the last connection left unacknowledged, in order
        self.resent += len(resend)
        number = 0
        while True:
            if reader.done():
                reader.result()  # the reason the socket ended
                raise Reconnect("socket closed")
            if resend:
                answer = self.sent[resend.pop(0)]
            elif not stop.is_set():
                answer = self._new_answer()
            elif not self.pending:
                return
            else:
                # Sent on this socket and not yet answered (or refused and to be sent again).
                waiting = set(in_flight.values())
                resend = [s for s in self.pending if s not in waiting]
                if not resend:
                    await asyncio.wait({reader}, timeout=0.05)
                continue
            while len(in_flight) >= self.window:
                await asyncio.wait({reader}, timeout=0.005)
                if reader.done():
                    reader.result()
                    raise Reconnect("socket closed")
            number += 1
            msg_id = f"c{self.connections}-{number}"
            in_flight[msg_id] = answer.seq
            data = {"item_id": answer.item, "response": answer.response, "client_seq": answer.seq}
            await ws.send(json.dumps({"type": "submit_answer", "id": msg_id, "data": data}))
            if not stop.is_set():
                await asyncio.sleep(self.pace)

    def _new_answer(self) -> Answer:
        answer = Answer(self._next_seq, self.rng.choice(ITEMS), [self.rng.choice("ABCD")])
        self._next_seq += 1
        self.sent[answer.seq] = answer
        return answer

    async def _read(self, ws: websockets.ClientConnection, in_flight: dict[str, int]) -> None:
        async for raw in ws:
            message = json.loads(raw)
            seq = in_flight.pop(str(message.get("re")), None)
            if seq is None:
                continue  # timer and other events
            if message["type"] == "answer_feedback":
                self._acknowledged(seq, message["data"])
            elif message["type"] == "error":
                code = message["data"]["code"]
                if code in RETRYABLE:
                    self._refused(code)  # stays pending: sent again
                else:
                    self.problems.append(f"seq {seq}: error {code}: {message['data']}")
            else:
                self.problems.append(f"seq {seq}: unexpected reply {message}")

    def _acknowledged(self, seq: int, ack: dict[str, Any]) -> None:
        answer = self.sent[seq]
        if ack["client_seq"] != seq or ack["item_id"] != answer.item:
            self.problems.append(f"seq {seq}: ack for another answer: {ack}")
        if seq in self.acks and self.acks[seq]["saved_at"] != ack["saved_at"]:
            self.problems.append(f"seq {seq}: acknowledged twice, differently: {ack}")
        self.acks.setdefault(seq, ack)

    def _refused(self, code: str) -> None:
        self.refusals[code] += 1
        if code not in RETRYABLE:
            self.problems.append(f"refused with {code}")
