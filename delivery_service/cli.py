"""`examserver`: demo, serve, cluster, migrate, create-user, seed-demo, ws-schema,
verify-ledger, import-qti, export-qti, revoke-tokens, import-users."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import threading
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from delivery_service.settings import Settings

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="examserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="one process, SQLite + in-process Redis, demo data")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--database", default="examserver-demo.db", help="SQLite file")

    serve = sub.add_parser("serve", help="run one worker with EXAMSERVER_* settings")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)

    sub.add_parser("migrate", help="upgrade the database schema to the latest revision")
    sub.add_parser("seed-demo", help="load the demo users and sample test into the database")

    create_user = sub.add_parser(
        "create-user",
        help="create an account (the first admin); the password is read from a prompt, or "
        "from stdin when it is not a terminal, never from the command line",
    )
    create_user.add_argument("username")
    create_user.add_argument("--role", choices=["admin", "teacher", "student"], required=True)
    create_user.add_argument("--display-name", help="defaults to the username")
    create_user.add_argument(
        "--temporary", action="store_true", help="the user must change the password at sign-in"
    )

    schema = sub.add_parser("ws-schema", help="print the WebSocket protocol's JSON Schema")
    schema.add_argument("--output", type=Path)

    cluster = sub.add_parser(
        "cluster", help="N workers behind nginx on loopback (shared PostgreSQL and Redis)"
    )
    cluster.add_argument("--workers", type=int, default=2)
    cluster.add_argument("--port", type=int, default=8000, help="nginx's port")

    verify = sub.add_parser(
        "verify-ledger", help="recompute the integrity ledger's seals; exit 1 if a chain is broken"
    )
    verify.add_argument("--attempt", type=uuid.UUID, help="only this attempt's chain")
    verify.add_argument("--json", action="store_true", help="one JSON object per chain")

    qti_in = sub.add_parser("import-qti", help="import a QTI 3.0 (or 2.1/2.2) content package")
    qti_in.add_argument("package", type=Path, help="the .zip")
    qti_in.add_argument("--all-or-nothing", action="store_true", help="refuse on any problem")
    qti_in.add_argument("--as", dest="username", help="staff user recorded as the author")
    qti_out = sub.add_parser("export-qti", help="write a test as a QTI 3.0 content package")
    qti_out.add_argument("test_id", type=uuid.UUID)
    qti_out.add_argument("out", type=Path, help="the .zip to write")
    qti_out.add_argument("--as", dest="username", help="staff user recorded as the exporter")

    revoke = sub.add_parser(
        "revoke-tokens",
        help="end every token and open socket of a user (a leaked token, a departed user)",
    )
    revoke.add_argument("username")
    state = revoke.add_mutually_exclusive_group()
    state.add_argument("--disable", action="store_true", help="also disable the account")
    state.add_argument("--enable", action="store_true", help="enable a disabled account")

    users_in = sub.add_parser("import-users", help="create or update users and classes from CSV")
    users_in.add_argument("file", type=Path, help="username,display_name,role,class,password")
    users_in.add_argument("--dry-run", action="store_true", help="report only; write nothing")
    users_in.add_argument("--as", dest="username", help="staff user to act as (default: an admin)")
    users_in.add_argument("--passwords-out", type=Path, help="new CSV file for generated passwords")
    users_in.add_argument("--reissue-passwords", action="store_true",
                          help="new passwords for users who never chose theirs")  # fmt: skip
    users_in.add_argument("--keep-given-passwords", action="store_true",
                          help="the file's passwords need no change at first sign-in")  # fmt: skip
    users_in.add_argument("--json", action="store_true", help="the report as JSON")

    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ValidationError as exc:
        print(f"examserver: invalid settings:\n{exc}", file=sys.stderr)
        return 2


def run_demo(args: argparse.Namespace) -> int:
    from delivery_service.storage.migrate import upgrade

    settings = Settings(
        environment="demo",
        database_url=f"sqlite+aiosqlite:///{Path(args.database).resolve()}",
        redis_url="memory://",
        jwt_secret=os.environ.get("EXAMSERVER_JWT_SECRET") or secrets.token_urlsafe(32),
    )
    upgrade(settings.database_url)
    created = asyncio.run(_seed(settings))
    base = f"http://{args.host}:{args.port}"
    print(
        f"""
examserver demo is starting (SQLite file {args.database}, in-process Redis).
  {created} demo users created; every demo password is "demo" (demo data only).
  Users: admin, teacher, student1 … student30.
  Candidate app:          {base}/
  Proctor console:        {base}/console/   (sign in as teacher)
  API docs (try it out):  {base}/docs
  Health:                 {base}/healthz   {base}/readyz
  Log in:    POST {base}/api/v1/auth/login  {{"username": "student1", "password": "demo"}}
Press Ctrl+C to stop.
""",
        flush=True,
    )
    from delivery_service.app import create_app

    _run(create_app(settings), args.host, args.port, settings)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from delivery_service.logs import configure_logging

    settings = Settings()
    configure_logging(json_lines=settings.log_format == "json")
    if settings.redis_url == "memory://":
        log.warning(
            "EXAMSERVER_REDIS_URL is memory://, so this worker shares no state with others; "
            "set it to redis://… for a cluster"
        )
    from delivery_service.app import create_app

    _run(create_app(settings), args.host, args.port, settings)
    return 0


def run_migrate(_: argparse.Namespace) -> int:
    from delivery_service.storage.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url)
    print("database schema is at the latest revision")
    return 0


def run_create_user(args: argparse.Namespace) -> int:
    from delivery_service.commands.accounts import create_user

    return create_user(args)


def run_revoke(args: argparse.Namespace) -> int:
    from delivery_service.commands.accounts import revoke_tokens

    return revoke_tokens(args)


def run_seed(_: argparse.Namespace) -> int:
    created = asyncio.run(_seed(Settings()))
    print(f"demo data loaded ({created} users created; password 'demo', demo use only)")
    return 0


def run_cluster(args: argparse.Namespace) -> int:
    from delivery_service.cluster import run

    return run(args.workers, args.port)


def run_verify(args: argparse.Namespace) -> int:
    from delivery_service.services.evidence import verification_out

    results = asyncio.run(_verify(Settings(), args.attempt))
    broken = [r for r in results if not r.ok]
    for result in results:
        if args.json:
            print(json.dumps(verification_out(result), sort_keys=True))
        elif not result.ok and result.first_broken is not None:
            b = result.first_broken
            print(f"BROKEN {result.chain}: event {b.seq} ({b.problem}): {b.detail}")
        else:
            print(f"ok     {result.chain}: {result.events} events")
    if not args.json:
        total = sum(r.events for r in results)
        print(f"{len(results)} chains, {total} events, {len(broken)} broken")
    return 1 if broken else 0


async def _verify(settings: Settings, attempt: uuid.UUID | None) -> list[Any]:
    from delivery_service.storage.database import create_engine, create_sessionmaker
    from delivery_service.storage.ledger import Ledger, attempt_chain

    engine = create_engine(settings)
    ledger = Ledger(settings.ledger_key.encode())
    try:
        async with create_sessionmaker(engine)() as s:
            if attempt is not None:
                return [await ledger.verify(s, attempt_chain(attempt))]
            return [await ledger.verify(s, chain) async for chain in ledger.chains(s)]
    finally:
        await engine.dispose()


def run_import_qti(args: argparse.Namespace) -> int:
    from delivery_service.domain.errors import DomainError

    try:
        result = asyncio.run(
            _with_catalog(
                Settings(),
                args.username,
                lambda catalog, who: catalog.import_qti(
                    who, args.package.read_bytes(), all_or_nothing=args.all_or_nothing
                ),
            )
        )
    except DomainError as refused:
        print(f"examserver: {refused.code}: {refused.message}", file=sys.stderr)
        for problem in refused.details.get("problems", []):
            print(f"  {problem['file']} {problem['identifier'] or ''}: {problem['reason']}",
                  file=sys.stderr)  # fmt: skip
        return 1
    print(f"QTI {result.version} package imported")
    for identifier, outcome in result.items.items():
        print(f"  item {identifier}: {outcome}")
    if result.test_id:
        print(f"  test {result.test_id}")
    for problem in result.problems:
        print(f"  skipped {problem.file} {problem.identifier or ''}: {problem.reason}")
    return 0


def run_export_qti(args: argparse.Namespace) -> int:
    from delivery_service.domain.errors import DomainError

    try:
        data = asyncio.run(
            _with_catalog(
                Settings(),
                args.username,
                lambda catalog, who: catalog.export_qti(who, args.test_id),
            )
        )
    except DomainError as refused:
        print(f"examserver: {refused.code}: {refused.message}", file=sys.stderr)
        return 1
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes)")
    return 0


async def _with_catalog(settings: Settings, username: str | None, use: Any) -> Any:
    """Run `use(catalog, principal)` as a staff user (named, or the first admin)."""
    from delivery_service.offline import connected
    from delivery_service.services.catalog import CatalogService

    async with connected(settings) as offline:
        principal = await offline.staff(username)
        return await use(
            CatalogService(
                db=offline.db, ledger=offline.ledger, hash_cost=settings.password_hash_cost
            ),
            principal,
        )


def run_import_users(args: argparse.Namespace) -> int:
    from delivery_service.commands.user_import import run

    return run(Settings(), args)


def run_schema(args: argparse.Namespace) -> int:
    from delivery_service.api.ws.schema import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


async def _seed(settings: Settings) -> int:
    from delivery_service.demo import seed_demo
    from delivery_service.storage.database import create_engine, create_sessionmaker

    engine = create_engine(settings)
    try:
        return await seed_demo(create_sessionmaker(engine), hash_cost=settings.password_hash_cost)
    finally:
        await engine.dispose()


def _run(app: FastAPI, host: str, port: int, settings: Settings) -> None:
    from delivery_service.logs import configure_logging
    from delivery_service.loop_watch import tune_gc

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # Above our own limit so an oversize message gets a clear `error` reply, not a close.
        ws_max_size=4 * settings.ws_max_message_bytes,
        ws_per_message_deflate=False,  # costs hundreds of KiB per socket; not measured worth it
        timeout_graceful_shutdown=10,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # JSON lines: uvicorn's loggers go through our root handler instead of its own set-up.
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )
    server = DrainingServer(config, app, settings.drain_seconds)
    configure_logging(json_lines=settings.log_format == "json")  # again: uvicorn.Config set its own
    tune_gc(settings.gc_thresholds)
    server.run()


class DrainingServer(uvicorn.Server):
    """On the first SIGTERM/SIGINT, drain before shutting down: /readyz answers 503 and new
    sockets are told to reconnect elsewhere for `drain_seconds`, so a load balancer stops sending
    traffic here first. Then uvicorn stops listening and closes sockets with 1012. A second signal
    exits at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_seconds: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runtime = getattr(self._app.state, "runtime", None)
        if self._drain_seconds > 0 and runtime is not None and not runtime.draining:
            runtime.draining = True
            log.info("draining for %.1fs before shutting down", self._drain_seconds)
            later = threading.Timer(self._drain_seconds, super().handle_exit, (sig, frame))
            later.daemon = True
            later.start()
            return
        super().handle_exit(sig, frame)


COMMANDS = {
    "demo": run_demo,
    "serve": run_serve,
    "migrate": run_migrate,
    "seed-demo": run_seed,
    "create-user": run_create_user,
    "ws-schema": run_schema,
    "verify-ledger": run_verify,
    "cluster": run_cluster,
    "import-qti": run_import_qti,
    "export-qti": run_export_qti,
    "revoke-tokens": run_revoke,
    "import-users": run_import_users,
}


if __name__ == "__main__":
    raise SystemExit(main())
