"""How the proctor console copes with a big session: N students live, measured in real Chromium.

    python -m bench.console_load --students 300

Starts one embedded worker (or one against EXAMSERVER_DATABASE_URL / EXAMSERVER_REDIS_URL when
given), connects N students over the session WebSocket, opens the console in Debian's headless
Chromium, starts the session, has every student answer and switch tabs, and prints: how long
the grid took to show everyone online, how long after the last event the grid showed all of it,
and the browser's long tasks (main-thread blocks over 50 ms). Writes bench/results/*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import websockets
from playwright.async_api import async_playwright

from bench.seeding import choice_test
from delivery_service.domain.principal import Principal
from delivery_service.embedded import running_server
from delivery_service.security.passwords import hash_password
from delivery_service.services.catalog import add_test
from delivery_service.settings import Settings
from delivery_service.storage.database import create_engine, create_sessionmaker
from delivery_service.storage.migrate import upgrade
from delivery_service.storage.models import Class, ClassStudent, ClassTeacher, GroupSession, User

RESULTS = Path(__file__).with_name("results")
LONGTASKS = """
window.__longtasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longtasks.push(entry.duration);
}).observe({ type: "longtask", buffered: true });
"""


async def seed(settings: Settings, students: int) -> tuple[str, list[Principal], Principal]:
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    now = datetime.now(UTC)
    hashed = hash_password("bench", cost=2**8)
    async with sessions() as s, s.begin():
        teacher = User(username=f"t-{uuid.uuid4().hex[:6]}", display_name="Teacher",
                       password_hash=hashed, role="teacher", created_at=now)  # fmt: skip
        users = [
            User(
                username=f"s{n:04d}-{uuid.uuid4().hex[:4]}",
                display_name=f"Student {n}",
                password_hash=hashed,
                role="student",
                created_at=now,
            )  # fmt: skip
            for n in range(students)
        ]
        s.add_all([teacher, *users])
        await s.flush()
        test = await add_test(s, choice_test("Bench"), created_by=teacher.id)
        klass = Class(name="Bench class", state="active", created_by=teacher.id, created_at=now)
        s.add(klass)
        await s.flush()
        s.add(ClassTeacher(class_id=klass.id, user_id=teacher.id))
        s.add_all(ClassStudent(class_id=klass.id, user_id=u.id, enrolled_at=now) for u in users)
        session = GroupSession(class_id=klass.id, test_id=test.id, title="Bench session",
                               state="waiting", scheduled_at=now, created_by=teacher.id,
                               created_at=now)  # fmt: skip
        s.add(session)
    await engine.dispose()
    who = [Principal(u.id, u.username, "student") for u in users]
    return str(session.id), who, Principal(teacher.id, teacher.username, "teacher")


async def student(url: str, token: str, ready: asyncio.Event, go: asyncio.Event,
                  done: list[float]) -> None:  # fmt: skip
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "auth", "data": {"token": token}}))
        while json.loads(await ws.recv())["type"] != "state_sync_response":
            pass
        ready.set()
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "session_started":
                break
        await go.wait()
        for seq in range(1, 4):
            await ws.send(json.dumps({"type": "answer_submitted", "id": f"a{seq}",
                                      "data": {"item_id": f"q{seq}", "response": "A",
                                               "client_seq": seq}}))  # fmt: skip
        await ws.send(json.dumps({"type": "tab_violation", "data": {"duration_ms": 2000}}))
        acks = 0
        while acks < 4:
            if json.loads(await ws.recv())["type"] in ("answer_feedback", "event_recorded"):
                acks += 1
        done.append(time.perf_counter())
        await asyncio.sleep(3600)


def bench_settings() -> Settings:
    tmp = tempfile.mkdtemp()
    return Settings(
        environment="test",
        database_url=os.environ.get(
            "EXAMSERVER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp}/bench.db"
        ),
        redis_url=os.environ.get("EXAMSERVER_REDIS_URL", "memory://"),
        redis_prefix=f"bench{uuid.uuid4().hex[:6]}:exam:v1",
        jwt_secret="bench-secret-" + "x" * 32,
        ws_rate_burst=100,
    )


async def run(settings: Settings, students: int) -> dict[str, Any]:
    url = settings.database_url
    session_id, who, teacher = await seed(settings, students)
    async with running_server(settings) as served:
        tokens = served.runtime.tokens
        ws_url = served.url.replace("http://", "ws://") + f"/api/v1/sessions/{session_id}/ws"
        go = asyncio.Event()
        finished: list[float] = []
        readies = [asyncio.Event() for _ in who]
        tasks = [
            asyncio.create_task(student(ws_url, tokens.issue(p), r, go, finished))
            for p, r in zip(who, readies, strict=True)
        ]
        await asyncio.gather(*(r.wait() for r in readies))

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            token = tokens.issue(teacher)
            await page.add_init_script(
                LONGTASKS + f"sessionStorage.setItem('examserver.token', {json.dumps(token)});"
            )
            opened = time.perf_counter()
            await page.goto(f"{served.url}/console/?session={session_id}")
            await page.wait_for_function(
                f"document.querySelectorAll('#grid td.on').length === {students}", timeout=120_000
            )
            grid_online_s = time.perf_counter() - opened

            async with httpx.AsyncClient(base_url=served.url) as http:
                reply = await http.post(
                    f"/api/v1/sessions/{session_id}/start",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=120,
                )
                reply.raise_for_status()
            await page.wait_for_function(
                "document.querySelector('#session-state').textContent === 'in_progress'"
            )
            burst = time.perf_counter()
            go.set()
            await page.wait_for_function(
                f"[...document.querySelectorAll('#grid tbody tr')]"
                f".filter(r => r.children[4].textContent.startsWith('3/')"
                f" && r.children[6].textContent === '1').length === {students}",
                timeout=300_000,
                polling=100,
            )
            grid_caught_up = time.perf_counter()
            longtasks: list[float] = await page.evaluate("window.__longtasks")
            await browser.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    last_ack = max(finished)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "students": students,
        "database": "postgresql" if url.startswith("postgresql") else "sqlite",
        "events_sent": students * 4,
        "grid_all_online_seconds": round(grid_online_s, 3),
        "burst_all_acked_seconds": round(last_ack - burst, 3),
        "grid_behind_last_ack_seconds": round(grid_caught_up - last_ack, 3),
        "browser_long_tasks": len(longtasks),
        "browser_long_task_max_ms": round(max(longtasks), 1) if longtasks else 0,
        "browser_long_task_median_ms": round(statistics.median(longtasks), 1) if longtasks else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=300)
    args = parser.parse_args()
    settings = bench_settings()
    upgrade(settings.database_url)
    result = asyncio.run(run(settings, args.students))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"console-{args.students}-{result['date'].replace(':', '')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
