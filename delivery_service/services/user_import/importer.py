"""Bulk import of users from CSV: read the facts the file's rows touch (facts.py), let the
domain decide (domain/user_import/), then hash here and write, one transaction per batch
(batch.py).

Everything is checked before anything is written; a refused row refuses the import. Batches
commit one after the other, each with its ledger entry, so a worker that dies mid-import leaves
whole batches, and running the same file again completes it (rows already written are then
`unchanged`). Hashing is the cost of an import (scrypt, on purpose): it runs on a small pool of
its own, at the import's lower cost (sign-in raises it later), never on the event loop and
never in the threads sign-ins verify passwords in, and outside the batch's transaction.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Conflict, Unprocessable
from delivery_service.domain.principal import Principal
from delivery_service.domain.user_import import (
    Outcome,
    Parsed,
    Row,
    batches,
    parse,
    plan,
    require_may_import,
)
from delivery_service.read_models.user_import import ImportReport, IssuedPasswordOut
from delivery_service.security.password_policy import weakness
from delivery_service.security.passwords import hash_password, verify_password
from delivery_service.services.revocation import Revocations
from delivery_service.services.user_import.batch import Changed, write_batch
from delivery_service.services.user_import.facts import read_facts
from delivery_service.services.user_import.report import report
from delivery_service.settings import Settings
from delivery_service.storage.ledger import Ledger

T = TypeVar("T")
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off a printed slip


def generate_password(username: str) -> str:
    """Four groups of four (~79 bits), easy to type from a slip; accepted by the policy."""
    while True:
        candidate = "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(4))
        if weakness(candidate, username=username) is None:
            return candidate


class UserImports:
    """`run` checks a file (and with `dry_run` stops there) and applies it."""

    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        revocations: Revocations,
        hash_cost: int,
        max_rows: int,
        batch_rows: int,
        hash_threads: int,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._revocations = revocations
        self._hash_cost = hash_cost
        self._max_rows = max_rows
        self._batch_rows = batch_rows
        self._hash_threads = hash_threads

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        db: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        revocations: Revocations,
    ) -> UserImports:
        """As the settings say (the worker's runtime and the CLI build it alike); never
        hashing above the server's own cost."""
        return cls(
            db=db,
            ledger=ledger,
            revocations=revocations,
            hash_cost=min(settings.import_hash_cost, settings.password_hash_cost),
            max_rows=settings.import_max_rows,
            batch_rows=settings.import_batch_rows,
            hash_threads=settings.import_hash_threads,
        )

    async def run(
        self,
        principal: Principal,
        data: bytes,
        *,
        dry_run: bool,
        reissue_passwords: bool = False,
        given_temporary: bool = True,
        on_batch: Callable[[list[IssuedPasswordOut]], None] | None = None,
    ) -> ImportReport:
        """The report; `import_refused` (422, the report in its details) if a row is refused.
        A password the file gives is temporary (changed at first sign-in, as one an admin sets
        over the users API) unless `given_temporary` is false; a generated one always is.
        `on_batch` is told each batch's generated passwords once it committed (the CLI writes
        them out as it goes, so a crash loses none that were written)."""
        require_may_import(principal)
        parsed = await asyncio.to_thread(
            parse,
            data,
            max_rows=self._max_rows,
            weakness=lambda password, username: weakness(password, username=username),
        )
        pool = HashPool(self._hash_threads)
        try:
            return await self._run(
                principal, parsed, pool, dry_run, reissue_passwords, given_temporary, on_batch
            )
        finally:
            pool.close()

    async def _run(
        self,
        principal: Principal,
        parsed: Parsed,
        pool: HashPool,
        dry_run: bool,
        reissue_passwords: bool,
        given_temporary: bool,
        on_batch: Callable[[list[IssuedPasswordOut]], None] | None,
    ) -> ImportReport:
        by_line = {row.line: row for row in parsed.rows}
        facts = await read_facts(self._db, principal, parsed)
        # Compared only where the importer may change the user anyway, and only while the
        # password is still a temporary one someone set: otherwise a dry run would tell any
        # teacher whether a guess is a student's password (facts.hashes holds no others).
        comparable = {
            name: stored
            for name, stored in facts.hashes.items()
            if principal.role == "admin" or facts.existing[name].taught_by_actor
        }
        same = await self._same_passwords(pool, parsed.rows, comparable)
        decided = plan(
            parsed,
            actor=principal,
            existing=facts.existing,
            classes=facts.classes,
            same_password=same,
            reissue_passwords=reissue_passwords,
        )
        if dry_run:
            return report(decided, dry_run=True)
        if not decided.ok:
            refused = report(decided, dry_run=False)
            raise Unprocessable(
                "import_refused",
                f"{refused.summary.refused} of {refused.summary.rows} rows refused; "
                "nothing was written",
                **refused.model_dump(mode="json"),
            )
        import_id = uuid.uuid4()
        class_ids = {k: c.ids[0] for k, c in facts.classes.items() if len(c.ids) == 1}
        issued: list[IssuedPasswordOut] = []
        done = 0
        for batch in batches(decided.outcomes, self._batch_rows):
            secrets_ = await self._hash(pool, batch, by_line)
            try:
                revoked = await write_batch(
                    self._db,
                    self._ledger,
                    principal=principal,
                    import_id=import_id,
                    number=done + 1,
                    batch=batch,
                    secrets_=secrets_,
                    class_ids=class_ids,
                    given_temporary=given_temporary,
                )
            except (IntegrityError, Changed) as exc:
                raise Conflict(
                    "import_conflict",
                    f"users or classes changed while importing (batch {done + 1}); "
                    f"{done} batches were written: run the import again to complete it",
                    batches=done,
                    passwords=[p.model_dump() for p in issued],
                ) from exc
            done += 1
            for user_id, version in revoked:
                await self._revocations.changed(user_id, version)
            fresh = [
                IssuedPasswordOut(
                    line=o.line,
                    username=o.username,
                    display_name=o.display_name,
                    password=clear,
                )
                for o in batch
                if (clear := secrets_[o.line][1]) is not None
            ]
            issued += fresh
            if on_batch is not None:
                on_batch(fresh)
        return report(decided, dry_run=False, import_id=import_id, batches=done, passwords=issued)

    @staticmethod
    async def _same_passwords(
        pool: HashPool, rows: Sequence[Row], hashes: dict[str, str]
    ) -> dict[int, bool]:
        """Whether each existing user's password in the file is the one stored (so running a
        file twice changes nothing). A hash that sign-in has since raised to the server's cost
        costs that much to check: ~45 ms a row, spread over the pool."""
        checks = [
            (row.line, (password, hashes[row.username]))
            for row in rows
            if (password := row.password) is not None and row.username in hashes
        ]
        same = await pool.map(verify_password, [job for _, job in checks])
        return {line: matches for (line, _), matches in zip(checks, same, strict=True)}

    async def _hash(
        self, pool: HashPool, batch: list[Outcome], by_line: dict[int, Row]
    ) -> dict[int, tuple[str | None, str | None]]:
        """line -> (the hash to store, the generated password to show once), for the rows that
        set a password; (None, None) for the others."""
        clear: dict[int, tuple[str, bool]] = {}
        for o in batch:
            if o.password == "generated":
                clear[o.line] = (generate_password(o.username), True)
            elif o.password == "set":
                password = by_line[o.line].password
                if password is None:  # pragma: no cover - "set" means the row gave one
                    raise ValueError(f"line {o.line}: no password to set")
                clear[o.line] = (password, False)
        hashed = await pool.map(_hash_at, [(pw, self._hash_cost) for pw, _ in clear.values()])
        out: dict[int, tuple[str | None, str | None]] = {o.line: (None, None) for o in batch}
        for (line, (password, generated)), digest in zip(clear.items(), hashed, strict=True):
            out[line] = (digest, password if generated else None)
        return out


class HashPool:
    """A few threads of the import's own, fed a few jobs at a time. scrypt releases the GIL,
    so two threads hash on two cores; submitting thousands of jobs at once held the event loop
    for over a second, and the default executor would queue sign-ins behind them."""

    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="import-hash")
        self._in_flight = 2 * threads  # one waiting per thread: no thread idles between jobs

    async def map(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
        loop = asyncio.get_running_loop()
        results: list[T | None] = [None] * len(jobs)
        pending = iter(enumerate(jobs))

        async def feed() -> None:
            for index, args in pending:
                results[index] = await loop.run_in_executor(self._executor, fn, *args)

        await asyncio.gather(*(feed() for _ in range(self._in_flight)))
        return results  # type: ignore[return-value]  # every slot was filled

    def close(self) -> None:
        # Never wait on the event loop for hashes nobody will use (a refused or failed run).
        self._executor.shutdown(wait=False, cancel_futures=True)


def _hash_at(password: str, cost: int) -> str:
    return hash_password(password, cost=cost)
