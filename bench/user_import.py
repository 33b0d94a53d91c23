"""Bulk import of users: 10,000 rows through POST /api/v1/users/import, on the embedded default.

    python -m bench.user_import                  # SQLite file + in-process Redis (the demo's)
    python -m bench.user_import --postgres       # PostgreSQL + Redis as well
    python -m bench.user_import --rows 20000 --batch 500

One worker in this process (`embedded.running_server`) with production settings otherwise:
sign-in hashes at scrypt 2**14, imports at `import_hash_cost` (2**11) on `import_hash_threads`
(2). The roster: N students in classes of 30 (created by the import), one teacher per class,
half the rows with a password of their own and half left to be generated. The same file is
posted three times: a dry run, the import, and again (all unchanged: the idempotent re-run,
which checks every given password against its stored hash). For each it prints seconds,
rows/s, the CPU seconds this process used (the worker and its hashing threads: on an idle
machine the wall time is about that over the two cores) and, during the import, how long a
request that reads the database (GET /api/v1/tests, every 100 ms) took on the same worker:
what an import costs everyone else meanwhile.

PostgreSQL: EXAMSERVER_DATABASE_URL (default database `bench_user_import`, dropped and made
afresh), EXAMSERVER_REDIS_URL (default redis://127.0.0.1:6379/14, a prefix of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import string
import tempfile
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.load import ensure_database, percentiles
from delivery_service.embedded import running_server
from delivery_service.security.passwords import hash_password
from delivery_service.settings import Settings
from delivery_service.storage.database import create_engine, create_sessionmaker
from delivery_service.storage.migrate import upgrade
from delivery_service.storage.models import User

ADMIN_PASSWORD = "bench admin password 2026"
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_user_import"


def roster(rows: int, seed: int = 7) -> bytes:
    """`rows` rows: a teacher per class of 30, the rest students; every other row with its
    own password (random, so the policy accepts it), the others to be generated."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    lines = ["username,display_name,role,class,password"]
    for n in range(rows):
        klass = f"Class {n // 31 + 1:03}"
        role = "teacher" if n % 31 == 0 else "student"
        password = "".join(rng.choice(alphabet) for _ in range(16)) if n % 2 else ""
        lines.append(f"user{n:05},User {n:05},{role},{klass},{password}")
    return ("\n".join(lines) + "\n").encode()


async def add_admin(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as s, s.begin():
            s.add(
                User(
                    username="bench_admin",
                    display_name="Bench admin",
                    password_hash=hash_password(ADMIN_PASSWORD, cost=settings.password_hash_cost),
                    role="admin",
                    created_at=datetime.now(UTC),
                )
            )
    finally:
        await engine.dispose()


async def probe(http: httpx.AsyncClient, stop: asyncio.Event, seen: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        reply = await http.get("/api/v1/tests")
        reply.raise_for_status()
        seen.append(time.perf_counter() - started)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def post(http: httpx.AsyncClient, data: bytes, **params: str) -> tuple[float, Any]:
    started = time.perf_counter()
    reply = await http.post(
        "/api/v1/users/import", content=data, params=params, headers={"Content-Type": "text/csv"}
    )
    seconds = time.perf_counter() - started
    if reply.status_code != 200:
        raise RuntimeError(f"import answered {reply.status_code}: {reply.text[:500]}")
    return seconds, reply.json()


async def run(name: str, settings: Settings, rows: int) -> dict[str, Any]:
    await asyncio.to_thread(upgrade, settings.database_url)
    await add_admin(settings)
    data = roster(rows)
    result: dict[str, Any] = {"deployment": name, "rows": rows, "bytes": len(data)}
    async with running_server(settings) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=600) as http:
            login = await http.post(
                "/api/v1/auth/login", json={"username": "bench_admin", "password": ADMIN_PASSWORD}
            )
            login.raise_for_status()
            http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            for step, params in (("dry_run", {"dry_run": "true"}), ("import", {}), ("rerun", {})):
                stop, seen = asyncio.Event(), []
                watcher = asyncio.create_task(probe(http, stop, seen))
                load, cpu = os.getloadavg()[0], time.process_time()
                seconds, report = await post(http, data, **params)
                cpu = time.process_time() - cpu  # the worker's threads (hashing) included
                stop.set()
                await watcher
                summary = report["summary"]
                result[step] = {
                    "seconds": round(seconds, 2),
                    "rows_per_second": round(rows / seconds),
                    "cpu_seconds": round(cpu, 1),
                    "load_before": load,
                    "summary": {k: v for k, v in summary.items() if v},
                    "passwords_returned": len(report["passwords"]),
                    "other_request_ms": percentiles(seen) if seen else {},
                }
                print(
                    f"  {name:<8} {step:<8} {seconds:7.2f} s  {rows / seconds:6.0f} rows/s  "
                    f"CPU {cpu:5.1f} s (load before {load:.1f})  {summary}\n"
                    f"{'':11}GET /tests meanwhile: {result[step]['other_request_ms']}",
                    flush=True,
                )
    return result


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    overrides = {"import_batch_rows": args.batch, "import_max_rows": max(20_000, args.rows)}
    common = {
        "environment": "demo",
        "jwt_secret": secrets.token_urlsafe(32),
        "log_format": "text",
        **overrides,
    }
    results = []
    with tempfile.TemporaryDirectory(prefix="examserver-import-") as folder:
        embedded = Settings(
            database_url=f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}",
            redis_url="memory://",
            **common,  # type: ignore[arg-type]
        )
        results.append(await run("embedded", embedded, args.rows))
    if args.postgres:
        database = os.environ.get("EXAMSERVER_DATABASE_URL", PG_DEFAULT)
        await ensure_database(database, fresh=True)
        real = Settings(
            database_url=database,
            redis_url=os.environ.get("EXAMSERVER_REDIS_URL", "redis://127.0.0.1:6379/14"),
            redis_prefix=f"bench{secrets.token_hex(3)}:exam:v1",
            **common,  # type: ignore[arg-type]
        )
        results.append(await run("postgres", real, args.rows))
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000, help="import_batch_rows")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL + Redis")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    print(f"bulk import of {args.rows} rows, batches of {args.batch}:", flush=True)
    results = asyncio.run(main(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    cli()
