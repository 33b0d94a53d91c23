"""`examserver cluster`: workers behind Debian's nginx; a rolling restart of every worker in the
middle of an exam loses no acknowledged answer and moves no deadline by a second."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from delivery_service.storage.models import Attempt, ResponseEvent
from tests.cluster.conftest import ROOT, Cluster
from tests.support import Api, free_port, sample_test

NGINX = Path("/usr/sbin/nginx")


@pytest.fixture
def nginx() -> None:
    if not NGINX.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI needs Debian's nginx for the cluster tests", pytrace=False)
        pytest.skip("nginx is not installed (apt-get install nginx)")


@dataclass
class Candidate:
    """A scripted candidate: answers every 100 ms, keeps unacknowledged answers and sends them
    again after reconnecting, as the candidate app does."""

    api: Api
    attempt_id: str
    ws_base: str
    seq: int = 0
    pending: dict[int, dict[str, object]] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    connections: int = 0
    closes: list[int | None] = field(default_factory=list)
    last_event: str = ""
    refusals: list[int] = field(default_factory=list)

    def next_answer(self) -> dict[str, object]:
        self.seq += 1
        answer = {"item_id": f"q{self.seq % 4 + 1}", "response": "AB"[self.seq % 2],
                  "client_seq": self.seq}  # fmt: skip
        self.pending[self.seq] = answer
        return answer

    async def run(self, stop: asyncio.Event) -> None:
        last_event = ""
        while not (stop.is_set() and not self.pending):
            reply = await self.api.http.post("/ws-tickets", json={"attempt_id": self.attempt_id})
            if reply.status_code != 201:  # the app retries with backoff, as here
                self.refusals.append(reply.status_code)
                await asyncio.sleep(0.2)
                continue
            ticket = reply.json()["ticket"]
            query = f"ticket={ticket}" + (f"&last_event_id={last_event}" if last_event else "")
            url = f"{self.ws_base}/api/v1/attempts/{self.attempt_id}/ws?{query}"
            try:
                async with websockets.connect(url, open_timeout=10) as ws:
                    self.connections += 1
                    for answer in list(self.pending.values()):  # the outbox, replayed
                        await ws.send(json.dumps({"type": "submit_answer", "data": answer}))
                    await asyncio.gather(self._send(ws, stop), self._receive(ws))
            except (ConnectionClosed, OSError, TimeoutError) as exc:
                self.closes.append(getattr(getattr(exc, "rcvd", None), "code", None))
                await asyncio.sleep(0.2)
            last_event = self.last_event or last_event

    async def _send(self, ws: websockets.ClientConnection, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await ws.send(json.dumps({"type": "submit_answer", "data": self.next_answer()}))
            await asyncio.sleep(0.1)
        while self.pending:
            await asyncio.sleep(0.05)
        await ws.close()

    async def _receive(self, ws: websockets.ClientConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message.get("seq"):
                self.last_event = message["seq"]
            if message["type"] == "answer_feedback":
                seq = message["data"]["client_seq"]
                self.acked.add(seq)
                self.pending.pop(seq, None)


async def test_a_rolling_restart_loses_no_answer_and_no_second(
    cluster: Cluster,
    nginx: None,
) -> None:
    port = free_port()
    command = ["cluster", "--workers", "2", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "delivery_service", *command],
        env=cluster.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []

    async def read_until(text: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not any(text in line for line in lines):
                line = await asyncio.to_thread(process.stdout.readline)  # type: ignore[union-attr]
                if not line and process.poll() is not None:
                    pytest.fail("the cluster exited:\n" + "".join(lines))
                lines.append(line)

    try:
        await read_until("behind nginx", 60)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/readyz")).status_code == 200
        teacher = await Api.login(base, "teacher")
        test = await teacher.post("/tests", sample_test(time_limit_seconds=600), expect=201)
        candidates = []
        for n in range(1, 7):
            api = await Api.login(base, f"student{n}")
            attempt = await api.post("/attempts", {"test_id": test["id"]}, expect=201)
            await api.post(f"/attempts/{attempt['id']}/start")
            candidates.append(Candidate(api, attempt["id"], base.replace("http", "ws")))
        async with cluster.sessions() as s:
            before = {a.id: a.deadline for a in await s.scalars(select(Attempt))}

        stop = asyncio.Event()
        running = [asyncio.create_task(c.run(stop)) for c in candidates]
        await asyncio.sleep(2)
        process.send_signal(signal.SIGHUP)
        await read_until("rolling restart done", 120)
        await asyncio.sleep(1)
        stop.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*running)

        async with cluster.sessions() as s:
            after = {a.id: a.deadline for a in await s.scalars(select(Attempt))}
            stored: dict[str, list[int]] = {}
            for row in await s.scalars(select(ResponseEvent)):
                stored.setdefault(str(row.attempt_id), []).append(row.client_seq)
        assert after == before  # not a second moved
        for c in candidates:
            assert c.pending == {}, f"{c.attempt_id}: never acknowledged {sorted(c.pending)}"
            assert sorted(stored[c.attempt_id]) == sorted(c.acked) == list(range(1, c.seq + 1))
            # Every candidate was on a worker that restarted: each came back at least once.
            assert c.connections >= 2, (c.connections, c.closes)
            # nginx sent every ticket request to a live worker: no candidate saw a 5xx.
            assert c.refusals == []
        assert sum(c.seq for c in candidates) > 6 * 20
        print(  # the figures for a reader of -s output
            f"answers {sum(c.seq for c in candidates)}, connections "
            f"{[c.connections for c in candidates]}, close codes {[c.closes for c in candidates]}"
        )
        for api in [teacher, *(c.api for c in candidates)]:
            await api.close()
    finally:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
        if process.poll() is None:
            process.kill()
        if process.stdout:
            process.stdout.close()
