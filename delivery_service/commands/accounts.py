"""`examserver create-user` and `revoke-tokens`: an operator's commands on accounts, against the
configured database and Redis (delivery_service/offline.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pydantic import ValidationError

from delivery_service.settings import Settings


def create_user(args: argparse.Namespace) -> int:
    from delivery_service.domain.errors import DomainError
    from delivery_service.schemas.users import UserIn
    from delivery_service.security.password_policy import weakness

    settings = Settings()
    password = _read_new_password()
    if password is None:
        return 1
    reason = weakness(password, username=args.username)
    if reason is not None:
        print(f"examserver: weak_password: {reason}", file=sys.stderr)
        return 1
    try:
        spec = UserIn(
            username=args.username,
            display_name=args.display_name,
            role=args.role,
            password=password,
            must_change_password=args.temporary,
        )
    except ValidationError as bad:
        print(f"examserver: invalid user: {bad.errors()[0]['msg']}", file=sys.stderr)
        return 1
    try:
        user = asyncio.run(_offline(settings, lambda o: o.users.create(None, spec)))
    except DomainError as refused:
        print(f"examserver: {refused.code}: {refused.message}", file=sys.stderr)
        return 1
    print(f"created {user.user.role} {user.user.username} ({user.user.id})")
    return 0


def _read_new_password() -> str | None:
    """From a prompt typed twice, or the first line of stdin when it is not a terminal (a
    script, a Kubernetes Job's secret): never argv, which other users of the host can read."""
    import getpass

    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            print("examserver: no password on stdin", file=sys.stderr)
            return None
        return line
    first = getpass.getpass("Password (12+ characters): ")
    if getpass.getpass("Again: ") != first:
        print("examserver: the two passwords differ", file=sys.stderr)
        return None
    return first


def revoke_tokens(args: argparse.Namespace) -> int:
    disable = True if args.disable else False if args.enable else None
    found = asyncio.run(_revoke(Settings(), args.username, disable))
    if found is None:
        print(f"examserver: no user {args.username!r}", file=sys.stderr)
        return 1
    version, disabled = found
    print(
        f"{args.username}: every earlier token ended (token version {version}); "
        f"account {'disabled' if disabled else 'enabled'}. Open sockets close within "
        f"{2 * Settings().token_recheck_seconds:g}s."
    )
    return 0


async def _revoke(
    settings: Settings, username: str, disable: bool | None
) -> tuple[int, bool] | None:
    from sqlalchemy import select

    from delivery_service.offline import connected
    from delivery_service.storage.models import User

    async with connected(settings) as offline:
        async with offline.db() as s:
            user_id = await s.scalar(select(User.id).where(User.username == username))
        if user_id is None:
            return None
        return await offline.revocations.revoke(user_id, disable=disable)


async def _offline(settings: Settings, use: Any) -> Any:
    """Run `use(offline)` against the configured database and Redis (delivery_service/offline)."""
    from delivery_service.offline import connected

    async with connected(settings) as offline:
        return await use(offline)
