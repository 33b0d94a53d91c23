"""`examserver import-users FILE.csv [--dry-run]`: the bulk import of POST /users/import from
a shell, acting as the first admin (or `--as` a staff user), printing the same report."""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
from typing import Any

from delivery_service.settings import Settings


def run(settings: Settings, args: argparse.Namespace) -> int:
    """The same report as POST /users/import; exit 1 if a row is refused. Generated passwords
    are printed once at the end, or written to --passwords-out batch by batch as they commit
    (a new file, readable by its owner only), so an interrupted import loses none."""
    from delivery_service.domain.errors import DomainError
    from delivery_service.read_models.user_import import ImportReport

    out = None
    if args.passwords_out and not args.dry_run:
        try:  # a new file, never someone's old one, and readable by its owner only
            fd = os.open(args.passwords_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            print(f"examserver: {args.passwords_out} exists; name a new file", file=sys.stderr)
            return 2
        out = os.fdopen(fd, "w", encoding="utf-8", newline="")
        slips = csv.writer(out)
        slips.writerow(["username", "display_name", "password"])
    issued: list[Any] = []

    def written(fresh: list[Any]) -> None:
        issued.extend(fresh)
        if out is not None:
            slips.writerows([p.username, p.display_name, p.password] for p in fresh)
            out.flush()

    try:
        report = asyncio.run(_import_users(settings, args, written))
    except DomainError as refused:
        if refused.code != "import_refused":
            print(f"examserver: {refused.code}: {refused.message}", file=sys.stderr)
            _show(issued if out is None else [])  # the batches that did commit
            return 1
        report = ImportReport.model_validate(refused.details)
    finally:
        if out is not None:
            out.close()
            if not issued:
                args.passwords_out.unlink()
    if args.json:
        print(report.model_dump_json(indent=2, exclude={"passwords"} if out else set()))
        return 0 if report.ok else 1
    for r in report.rows:
        what = ", ".join([*r.changes, *(f"+{c}" for c in r.classes_added)]) or "-"
        why = f"{r.code}: {r.reason}" if r.code else ""
        print(f"line {r.line:>5}  {r.action:<9} {r.username:<24} {r.role:<7} {what} {why}")
    n = report.summary
    done = "would be written (dry run)" if report.dry_run else "written"
    if not report.ok:
        done = "refused: nothing was written"
    print(f"{n.rows} rows: {n.create} create, {n.update} update, {n.unchanged} unchanged, "
          f"{n.refused} refused; {n.classes_created} new classes; {done}")  # fmt: skip
    if out is not None:
        print(f"{len(issued)} generated passwords written to {args.passwords_out}")
    else:
        _show(report.passwords)
    return 0 if report.ok else 1


def _show(passwords: list[Any]) -> None:
    if passwords:
        print("Generated passwords (shown once; each must be changed at first sign-in):")
        for p in passwords:
            print(f"  {p.username:<24} {p.password}")


async def _import_users(settings: Settings, args: argparse.Namespace, written: Any) -> Any:
    from delivery_service.offline import connected
    from delivery_service.services.user_import import UserImports

    data = args.file.read_bytes()
    async with connected(settings) as offline:
        principal = await offline.staff(args.username)
        imports = UserImports.build(
            settings, db=offline.db, ledger=offline.ledger, revocations=offline.revocations
        )
        return await imports.run(
            principal, data, dry_run=args.dry_run, reissue_passwords=args.reissue_passwords,
            given_temporary=not args.keep_given_passwords, on_batch=written,
        )  # fmt: skip
