"""The durable answer path alone, against pgbench on the same PostgreSQL.

    python -m bench.answer_path --attempts 400 --concurrency 20 --duration 20

Seeds running self-paced attempts, then P processes (default 2, like two workers) each run
their share of `--concurrency` closed-loop writers through `AttemptService.answers.save_answer` (the
call both sockets and REST make: lock, validate, replay check, state upsert, history row,
ledger seal, commit) with nothing in between: no socket, no JSON, no nginx. It prints
acknowledged answers per second, latency percentiles, SQL statements per answer, and checks
every acknowledged answer against `response_history`.

Then the same concurrency through pgbench with two scripts: `upsert` (the issue's "equivalent
upsert": one answer row upserted per transaction) and `answer` (the same statements our path
runs, as plain SQL), so the figures say how much is Python and how much is PostgreSQL.

Needs PostgreSQL (EXAMSERVER_DATABASE_URL, default database `bench`) and Redis
(EXAMSERVER_REDIS_URL, default redis://127.0.0.1:6379/14); pgbench from PostgreSQL's client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, select

from bench.load import (
    RESULTS,
    bench_databases,
    cluster_env,
    ensure_database,
    percentiles,
    settings_of,
)
from bench.seeding import choice_test
from delivery_service.domain.principal import Principal
from delivery_service.runtime import Runtime
from delivery_service.security.passwords import hash_password
from delivery_service.services.catalog import add_test
from delivery_service.settings import Settings
from delivery_service.storage.migrate import upgrade
from delivery_service.storage.models import Class, ClassStudent, ResponseEvent, User

ITEMS = 5


def settings_from_env() -> Settings:
    database, redis = bench_databases()
    return settings_of(cluster_env(database, redis, "answers"))


async def seed(settings: Settings, attempts: int) -> list[tuple[str, str, str]]:
    """(user id, username, attempt id) of `attempts` running attempts of one plain test."""
    runtime = Runtime.build(settings)
    run = uuid.uuid4().hex[:6]
    now = datetime.now(UTC)
    hashed = hash_password("bench", cost=2**8)
    async with runtime.db() as s, s.begin():
        teacher = User(
            username=f"a{run}-t", display_name="T", password_hash=hashed, role="teacher",
            created_at=now,
        )  # fmt: skip
        users = [
            User(
                username=f"a{run}-s{n:05d}",
                display_name=f"S{n}",
                password_hash=hashed,
                role="student",
                created_at=now,
            )  # fmt: skip
            for n in range(attempts)
        ]
        s.add_all([teacher, *users])
        await s.flush()
        # The candidates' class, which the test is assigned to (students take only those).
        klass = Class(name=f"Answers {run}", state="active", created_by=teacher.id, created_at=now)
        s.add(klass)
        await s.flush()
        s.add_all(ClassStudent(class_id=klass.id, user_id=u.id, enrolled_at=now) for u in users)
        spec = choice_test(f"Answers {run}", items=ITEMS, time_limit_seconds=3 * 3600)
        test = await add_test(
            s, spec.model_copy(update={"assigned_to": [klass.id]}), created_by=teacher.id
        )
        test_id = test.id
    out = []
    for u in users:
        who = Principal(u.id, u.username, "student")
        view, _ = await runtime.attempts.creation.create(who, test_id)
        await runtime.attempts.lifecycle.start(who, view.id)
        out.append((str(u.id), u.username, str(view.id)))
    await runtime.stop()
    return out


def writer_process(
    settings_json: str, share: list[tuple[str, str, str]], concurrency: int, duration: float,
    results: Any,
) -> None:  # fmt: skip
    results.put(asyncio.run(_writers(Settings.model_validate_json(settings_json), share,
                                     concurrency, duration)))  # fmt: skip


async def _writers(
    settings: Settings, share: list[tuple[str, str, str]], concurrency: int, duration: float
) -> dict[str, Any]:
    runtime = Runtime.build(settings)
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    latencies: list[float] = []
    acked: list[tuple[str, int]] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + duration

    async def writer(mine: list[tuple[str, str, str]]) -> None:
        seqs = {attempt: 0 for _, _, attempt in mine}
        n = 0
        while time.perf_counter() < stop:
            user_id, username, attempt = mine[n % len(mine)]
            n += 1
            seqs[attempt] += 1
            seq = seqs[attempt]
            sent = time.perf_counter()
            try:
                await runtime.attempts.answers.save_answer(
                    Principal(uuid.UUID(user_id), username, "student"),
                    uuid.UUID(attempt),
                    item_id=f"q{seq % ITEMS + 1}",
                    response="ABCD"[seq % 4],
                    client_seq=seq,
                )
            except Exception as exc:  # counted and reported, the run goes on
                name = getattr(exc, "code", type(exc).__name__)
                errors[name] = errors.get(name, 0) + 1
                continue
            latencies.append(time.perf_counter() - sent)
            acked.append((attempt, seq))

    began = time.perf_counter()
    await asyncio.gather(*(writer(share[i::concurrency]) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    await runtime.stop()
    return {"latencies": latencies, "acked": acked, "errors": errors, "elapsed": elapsed,
            "statements": statements}  # fmt: skip


async def verify(settings: Settings, acked: list[tuple[str, int]]) -> dict[str, int]:
    runtime = Runtime.build(settings)
    ids = sorted({uuid.UUID(a) for a, _ in acked})
    stored: set[tuple[str, int]] = set()
    rows = 0
    async with runtime.db() as s:
        for chunk in range(0, len(ids), 1000):
            for attempt_id, seq in await s.execute(
                select(ResponseEvent.attempt_id, ResponseEvent.client_seq).where(
                    ResponseEvent.attempt_id.in_(ids[chunk : chunk + 1000])
                )
            ):
                stored.add((str(attempt_id), seq))
                rows += 1
    await runtime.stop()
    return {"lost": len(set(acked) - stored), "duplicated": rows - len(stored)}


# ---- pgbench --------------------------------------------------------------------------------

PGBENCH_SETUP = """
DROP TABLE IF EXISTS pgb_answers, pgb_history, pgb_ledger, pgb_heads, pgb_attempts;
CREATE TABLE pgb_attempts (id int PRIMARY KEY, version int NOT NULL, deadline timestamptz);
CREATE TABLE pgb_answers (attempt_id int, item_id int, response jsonb, client_seq int,
  answered_at timestamptz, PRIMARY KEY (attempt_id, item_id));
CREATE TABLE pgb_history (id bigserial PRIMARY KEY, attempt_id int, item_id int, client_seq int,
  response jsonb, received_at timestamptz, UNIQUE (attempt_id, client_seq));
CREATE TABLE pgb_heads (chain text PRIMARY KEY, seq int, hash text);
CREATE TABLE pgb_ledger (id bigserial PRIMARY KEY, chain text, seq int, payload jsonb,
  hash text, UNIQUE (chain, seq));
INSERT INTO pgb_attempts SELECT g, 1, now() + interval '3 hours' FROM generate_series(1, {n}) g;
INSERT INTO pgb_heads SELECT 'attempt:' || g, 0, '' FROM generate_series(1, {n}) g;
"""

# The baseline: one answer upserted per transaction.
PGBENCH_UPSERT = """\\set a random(1, {n})
\\set i random(1, 5)
INSERT INTO pgb_answers VALUES (:a, :i, '"B"', :client_id, now())
  ON CONFLICT (attempt_id, item_id) DO UPDATE
  SET response = excluded.response, client_seq = excluded.client_seq, answered_at = now();
"""

# What our answer does, in SQL, statement for statement: lock the attempt (with its test);
# read the clock, the item states' aggregate and a prior answer in one statement; lock the
# ledger head; the history row with the state upsert as its CTE; the ledger event with the head
# update as its CTE; one transaction.
PGBENCH_ANSWER = """\\set a random(1, {n})
\\set i random(1, 5)
BEGIN;
SELECT version, deadline FROM pgb_attempts WHERE id = :a FOR UPDATE;
SELECT clock_timestamp(), s.*, p.id FROM (SELECT count(*) FILTER (WHERE response IS NOT NULL),
  max(client_seq) FILTER (WHERE item_id = :i) FROM pgb_answers WHERE attempt_id = :a) s
  LEFT JOIN pgb_history p ON p.attempt_id = :a AND p.client_seq = -1;
SELECT seq, hash FROM pgb_heads WHERE chain = 'attempt:' || :a FOR UPDATE;
WITH state AS (INSERT INTO pgb_answers VALUES (:a, :i, '"B"', 1, now())
  ON CONFLICT (attempt_id, item_id) DO UPDATE SET response = excluded.response)
INSERT INTO pgb_history (attempt_id, item_id, client_seq, response, received_at)
  VALUES (:a, :i, nextval('pgb_history_id_seq'), '"B"', now());
WITH head AS (UPDATE pgb_heads SET seq = seq + 1, hash = md5(random()::text)
  WHERE chain = 'attempt:' || :a)
INSERT INTO pgb_ledger (chain, seq, payload, hash) VALUES
  ('attempt:' || :a, nextval('pgb_ledger_id_seq'), '{{"item_id": "q1"}}', md5(random()::text));
COMMIT;
"""


async def pgbench(settings: Settings, concurrency: int, duration: int, n: int) -> dict[str, Any]:
    if shutil.which("pgbench") is None:
        return {"skipped": "pgbench is not installed"}
    url = settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url)
    await conn.execute(PGBENCH_SETUP.format(n=n))
    await conn.close()
    out: dict[str, Any] = {}
    for name, script in (("upsert", PGBENCH_UPSERT), ("answer", PGBENCH_ANSWER)):
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
            f.write(script.format(n=n))
        done = subprocess.run(
            ["pgbench", "-n", "-c", str(concurrency), "-j", "2", "-T", str(duration), "-f",
             f.name, url],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        Path(f.name).unlink()
        tps = re.search(r"tps = ([\d.]+)", done.stdout)
        latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
        out[name] = {
            "tps": float(tps.group(1)) if tps else None,
            "latency_avg_ms": float(latency.group(1)) if latency else None,
            **({} if tps else {"error": done.stderr[-500:]}),
        }
    conn = await asyncpg.connect(url)
    await conn.execute("DROP TABLE pgb_answers, pgb_history, pgb_ledger, pgb_heads, pgb_attempts")
    await conn.close()
    return out


async def prepare(settings: Settings, attempts: int) -> list[tuple[str, str, str]]:
    await ensure_database(settings.database_url)
    await asyncio.to_thread(upgrade, settings.database_url)
    return await seed(settings, attempts)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.answer_path",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--attempts", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20, help="writers in all")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--no-pgbench", action="store_true")
    args = parser.parse_args()
    settings = settings_from_env()
    t = time.perf_counter()
    world = asyncio.run(prepare(settings, args.attempts))
    print(f"seeded {len(world)} running attempts in {time.perf_counter() - t:.1f} s", flush=True)

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    per = max(args.concurrency // args.processes, 1)
    procs = [
        context.Process(
            target=writer_process,
            args=(
                settings.model_dump_json(),
                world[i :: args.processes],
                per,
                args.duration,
                results,
            ),
        )  # fmt: skip
        for i in range(args.processes)
    ]
    for p in procs:
        p.start()
    parts = [results.get() for _ in procs]
    for p in procs:
        p.join()
    latencies = [x for part in parts for x in part["latencies"]]
    acked = [tuple(x) for part in parts for x in part["acked"]]
    errors: dict[str, int] = {}
    for part in parts:
        for k, v in part["errors"].items():
            errors[k] = errors.get(k, 0) + v
    elapsed = max(part["elapsed"] for part in parts)
    statements = sum(part["statements"] for part in parts)
    checked = asyncio.run(verify(settings, acked))  # type: ignore[arg-type]
    ours = {
        "acked": len(acked),
        "answers_per_second": round(len(acked) / elapsed, 1),
        "latency": percentiles(latencies),
        "statements_per_answer": round(statements / max(len(acked), 1), 2),
        "errors": errors,
        **checked,
    }
    print(json.dumps({"answer_path": ours}, indent=2), flush=True)
    result: dict[str, Any] = {
        "scenario": "answer_path",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args),
        "answer_path": ours,
    }
    if not args.no_pgbench:
        baseline = asyncio.run(pgbench(settings, args.concurrency, int(args.duration),
                                       args.attempts))  # fmt: skip
        result["pgbench"] = baseline
        if baseline.get("upsert", {}).get("tps"):
            result["ratio_to_pgbench_upsert"] = round(
                ours["answers_per_second"] / baseline["upsert"]["tps"], 3
            )
        if baseline.get("answer", {}).get("tps"):
            result["ratio_to_pgbench_answer_sql"] = round(
                ours["answers_per_second"] / baseline["answer"]["tps"], 3
            )
        print(json.dumps({k: result[k] for k in result if k.startswith(("pgbench", "ratio"))},
                         indent=2))  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"answer_path-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
