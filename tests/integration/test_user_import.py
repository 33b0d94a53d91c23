"""Bulk import of users (POST /users/import, `examserver import-users`) on both deployments."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Conflict
from delivery_service.domain.principal import Principal
from delivery_service.domain.user_import import Outcome
from delivery_service.embedded import running_server
from delivery_service.live.connection import create_redis
from delivery_service.live.keys import Keys
from delivery_service.security.passwords import needs_rehash
from delivery_service.services.revocation import Revocations
from delivery_service.services.user_import import UserImports
from delivery_service.services.user_import.batch import Changed, write_batch
from delivery_service.settings import Settings
from delivery_service.storage.ledger import Ledger
from delivery_service.storage.models import Class, ClassStudent, ClassTeacher, LedgerEvent, User
from tests.integration.conftest import World
from tests.integration.test_cli import examserver
from tests.support import HOMEROOM, TEST_SECRET, Api, add_user

HEADER = "username,display_name,role,class,password\n"
CHOSEN = "violet harbour lantern"
ROSTER = (
    HEADER
    + "ada,Ada Lovelace,student,Homeroom;Robotics,\n"
    + f"bea,Bea Smith,student,Robotics,{CHOSEN}\n"
    + "mr_k,Karl Klein,teacher,Robotics,\n"
)


async def send(
    api: Api, body: str | bytes, *, dry_run: bool = False, **query: str
) -> httpx.Response:
    params = {"dry_run": "true"} if dry_run else {}
    return await api.http.post(
        "/users/import",
        content=body.encode() if isinstance(body, str) else body,
        params=params | query,
        headers={"Content-Type": "text/csv; charset=utf-8"},
    )


async def users(world: World) -> dict[str, User]:
    async with world.sessions() as s:
        return {u.username: u for u in await s.scalars(select(User))}


async def members(world: World, class_name: str) -> set[str]:
    async with world.sessions() as s:
        found = set()
        for table in (ClassStudent, ClassTeacher):
            found |= set(
                await s.scalars(
                    select(User.username)
                    .join(table, table.user_id == User.id)
                    .join(Class, Class.id == table.class_id)
                    .where(Class.name == class_name)
                )
            )
        return found


def lines(report: dict[str, Any]) -> list[tuple[int, str, str, str | None]]:
    return [(r["line"], r["username"], r["action"], r["code"]) for r in report["rows"]]


async def test_a_dry_run_reports_what_would_happen_and_writes_nothing(world: World) -> None:
    before = await users(world)
    reply = await send(world.admin, ROSTER + "student1,Student1,student,Homeroom,\n", dry_run=True)
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["dry_run"]
    assert report["ok"]
    assert report["import_id"] is None
    assert lines(report) == [
        (2, "ada", "create", None),
        (3, "bea", "create", None),
        (4, "mr_k", "create", None),
        (5, "student1", "unchanged", None),
    ]
    assert [r["password"] for r in report["rows"]] == ["generated", "set", "generated", None]
    assert report["classes_created"] == ["Robotics"]
    assert report["summary"] | {} == {"rows": 4, "create": 3, "update": 0, "unchanged": 1,
                                      "refused": 0, "classes_created": 1, "batches": 0}  # fmt: skip
    assert report["passwords"] == []
    assert (await users(world)).keys() == before.keys()
    assert await members(world, "Robotics") == set()


async def test_an_import_creates_users_classes_and_enrolments_and_runs_twice_to_no_effect(
    world: World,
) -> None:
    reply = await send(world.admin, ROSTER)
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["ok"]
    assert not report["dry_run"]
    assert report["summary"]["batches"] == 1
    issued = {p["username"]: p["password"] for p in report["passwords"]}
    assert issued.keys() == {"ada", "mr_k"}
    found = await users(world)
    # every password someone else chose is temporary, the file's own too (as over POST /users)
    assert all(found[name].must_change_password for name in ("ada", "mr_k", "bea"))
    assert found["mr_k"].role == "teacher"
    assert all(issued[name] not in found[name].password_hash for name in issued)
    # hashed at the import's lower cost: sign-in raises it to the server's
    assert needs_rehash(found["ada"].password_hash, cost=world.settings.password_hash_cost + 1)
    assert await members(world, "Robotics") == {"ada", "bea", "mr_k"}
    assert "ada" in await members(world, HOMEROOM)
    async with world.sessions() as s:
        robotics = await s.scalar(select(Class).where(Class.name == "Robotics"))
        assert robotics is not None
        teaches = await s.scalar(
            select(ClassTeacher.user_id).where(ClassTeacher.class_id == robotics.id)
        )
        assert teaches == found["mr_k"].id
    # generated and chosen passwords sign in
    for name, password in (*issued.items(), ("bea", CHOSEN)):
        signed_in = await Api.login(world.base_url, name, password)
        await signed_in.close()

    again = await send(world.admin, ROSTER)
    assert again.status_code == 200, again.text
    assert [r["action"] for r in again.json()["rows"]] == ["unchanged"] * 3
    assert again.json()["summary"]["batches"] == 0
    assert again.json()["passwords"] == []
    assert {u.username: u.password_hash for u in (await users(world)).values()} == {
        u.username: u.password_hash for u in found.values()
    }
    async with world.sessions() as s:
        assert (
            await s.scalar(select(func.count()).select_from(Class).where(Class.name == "Robotics"))
            == 1
        )


async def test_the_files_own_passwords_may_be_the_users_to_keep(world: World) -> None:
    roster = HEADER + f"bea,Bea Smith,student,Homeroom,{CHOSEN}\ncy,Cy,student,Homeroom,\n"
    reply = await send(world.admin, roster, must_change_password="false")
    assert reply.status_code == 200, reply.text
    found = await users(world)
    assert not found["bea"].must_change_password
    assert found["cy"].must_change_password  # generated: always temporary
    signed_in = await world.admin.http.post(
        world.base_url + "/api/v1/auth/login", json={"username": "bea", "password": CHOSEN}
    )
    assert signed_in.json()["must_change_password"] is False


async def test_an_imported_hash_is_raised_to_the_servers_cost_at_first_sign_in(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await add_user(sessions, "admin", "admin")
    cheap = settings.model_copy(update={"import_hash_cost": 16, "password_hash_cost": 256})
    async with running_server(cheap) as served:
        api = await Api.login(served.url, "admin")
        try:
            reply = await send(api, HEADER + f"bea,Bea,student,,{CHOSEN}\n")
            assert reply.status_code == 200, reply.text
            async with sessions() as s:
                stored = await s.scalar(select(User.password_hash).where(User.username == "bea"))
            assert stored is not None
            assert stored.startswith("scrypt$16$")
            await (await Api.login(served.url, "bea", CHOSEN)).close()
            async with sessions() as s:
                stored = await s.scalar(select(User.password_hash).where(User.username == "bea"))
            assert stored is not None
            assert stored.startswith("scrypt$256$")
        finally:
            await api.close()


async def test_a_refused_row_refuses_the_import_and_writes_nothing(world: World) -> None:
    before = await users(world)
    bad = ROSTER + "bad name,X,student,,\nbea,Again,student,,\ncy,Cy,student,,weak\n"
    reply = await send(world.admin, bad)
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "import_refused"
    assert "3 of 6 rows refused" in error["message"]
    report = error["details"]
    assert not report["ok"]
    assert report["import_id"] is None
    assert [(line, code) for line, _, action, code in lines(report) if action == "refused"] == [
        (5, "invalid_username"),
        (6, "duplicate_username"),
        (7, "weak_password"),
    ]
    assert report["passwords"] == []
    assert (await users(world)).keys() == before.keys()
    async with world.sessions() as s:
        assert await s.scalar(select(Class.id).where(Class.name == "Robotics")) is None
        assert (
            await s.scalar(
                select(func.count())
                .select_from(LedgerEvent)
                .where(LedgerEvent.type == "users_imported")
            )
            == 0
        )


async def test_a_teacher_imports_students_into_their_classes_only(world: World) -> None:
    mine = HEADER + "tina,Tina,student,Homeroom,\n"
    reply = await send(world.teacher, mine)
    assert reply.status_code == 200, reply.text
    assert "tina" in await members(world, HOMEROOM)

    teacher2 = await send(world.teacher2, HEADER + "tom,Tom,student,Homeroom,\n")
    assert teacher2.status_code == 422
    assert lines(teacher2.json()["error"]["details"]) == [(2, "tom", "refused", "class_not_taught")]

    staff = await send(world.teacher, HEADER + "boss,Boss,admin,,\nnew,N,student,Chess,\n")
    assert staff.status_code == 422
    assert [c for *_, c in lines(staff.json()["error"]["details"])] == [
        "role_not_allowed",
        "class_not_found",
    ]
    renamed = await send(
        world.teacher2, HEADER + "student1,Renamed,student,Homeroom,\n", dry_run=True
    )
    assert lines(renamed.json()) == [(2, "student1", "refused", "class_not_taught")]

    student = await send(world.student, mine, dry_run=True)
    assert student.status_code == 403
    assert student.json()["error"]["code"] == "forbidden"


async def test_changing_a_users_password_or_role_ends_their_tokens(world: World) -> None:
    line = HEADER + f"student1,Student1,student,Homeroom,{CHOSEN}\n"
    # A password the user chose is theirs: a file neither checks nor replaces it.
    kept = await send(world.admin, line)
    (row,) = kept.json()["rows"]
    assert (row["action"], row["changes"], row["password"]) == ("unchanged", [], None)
    await world.student.get("/auth/me")
    # A temporary one (an admin's reset) is replaced, and the sign-in made with it ends.
    student_id = (await world.student.get("/auth/me"))["id"]
    await world.admin.post(f"/users/{student_id}/password", {"password": "a temporary phrase"})
    temporary = await Api.login(world.base_url, "student1", "a temporary phrase")
    reply = await send(world.admin, line)
    assert reply.status_code == 200, reply.text
    (row,) = reply.json()["rows"]
    assert (row["action"], row["changes"], row["password"]) == ("update", ["password"], "set")
    revoked = await temporary.http.get("/auth/me")
    await temporary.close()
    assert revoked.status_code == 401
    assert revoked.json()["error"]["code"] == "token_revoked"
    with pytest.raises(httpx.HTTPStatusError):
        await Api.login(world.base_url, "student1", "a temporary phrase")
    relogged = await Api.login(world.base_url, "student1", CHOSEN)
    await relogged.close()
    # a display name alone changes no token
    other = await send(world.admin, HEADER + "student2,Second,student,Homeroom,\n")
    assert other.json()["rows"][0]["changes"] == ["display_name"]
    assert (await world.other.http.get("/auth/me")).status_code == 200


async def test_the_csv_may_come_as_a_multipart_upload(world: World) -> None:
    reply = await world.admin.http.post(
        "/users/import",
        params={"dry_run": "true"},
        files={"file": ("roster.csv", ROSTER.encode(), "text/csv")},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["summary"]["create"] == 3
    wrong_field = await world.admin.http.post(
        "/users/import", files={"roster": ("roster.csv", ROSTER.encode(), "text/csv")}
    )
    assert wrong_field.status_code == 422
    assert wrong_field.json()["error"]["code"] == "csv_missing"
    two_files = await world.admin.http.post(
        "/users/import",
        files={"file": ("a.csv", ROSTER.encode()), "more": ("b.csv", ROSTER.encode())},
    )
    assert two_files.status_code == 422
    assert two_files.json()["error"]["code"] == "invalid_upload"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "csv_empty"),
        (b"ada,Ada,student,,\n", "csv_no_header"),
        (b"name,role\n", "csv_bad_columns"),
        (HEADER.encode() + "Zoë,Zoë,student,,\n".encode("latin-1"), "csv_not_utf8"),
    ],
)
async def test_a_file_that_is_not_the_import_csv_gets_a_clear_code(
    world: World, body: bytes, code: str
) -> None:
    reply = await send(world.admin, body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["code"] == code


async def test_other_media_types_are_refused(world: World) -> None:
    reply = await world.admin.http.post("/users/import", json={"rows": []})
    assert reply.status_code == 415
    assert reply.json()["error"]["code"] == "unsupported_media_type"


async def test_an_import_is_in_the_audit_trail_without_passwords(world: World) -> None:
    reply = await send(world.admin, ROSTER)
    report = reply.json()
    audit = await world.admin.get("/audit?action=users_imported")
    (entry,) = audit
    assert (entry["actor"], entry["source"]) == ("admin", "staff")
    text = str(entry)
    assert sorted(entry["payload"]["created"]) == ["ada", "bea", "mr_k"]
    assert entry["payload"]["import_id"] == report["import_id"]
    assert entry["payload"]["classes_created"] == ["Robotics"]
    assert CHOSEN not in text
    assert all(p["password"] not in text for p in report["passwords"])
    async with world.sessions() as s:
        sealed = await Ledger(world.settings.ledger_key.encode()).verify(
            s, f"users-import:{report['import_id']}"
        )
    assert sealed.ok
    assert sealed.events == 1


# Below the edge: the service itself, where a batch fails.


class FailingLedger(Ledger):
    """Fails the append of batch `fail_at`: that batch's transaction rolls back."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(b"test-ledger-key")
        self.calls = 0
        self.fail_at = fail_at

    async def record(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the worker died here")
        return await super().record(*args, **kwargs)


@pytest.fixture
async def imports(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Callable[[Ledger], UserImports]]:
    """The service over a ledger of the test's choosing, in batches of 3."""
    redis = create_redis(settings.redis_url)
    revocations = Revocations(
        db=sessions, redis=redis, keys=Keys(settings.redis_prefix), ttl_seconds=60
    )

    def build(ledger: Ledger) -> UserImports:
        return UserImports(db=sessions, ledger=ledger, revocations=revocations, hash_cost=2**8,
                           max_rows=100, batch_rows=3, hash_threads=2)  # fmt: skip

    yield build
    await redis.aclose()


async def test_a_crash_mid_import_leaves_whole_batches_and_a_rerun_completes_it(
    sessions: async_sessionmaker[AsyncSession], imports: Callable[[Ledger], UserImports]
) -> None:
    admin_id = await add_user(sessions, "root", "admin")
    admin = Principal(admin_id, "root", "admin")
    roster = HEADER + "".join(f"s{n:02},S {n},student,Class {n % 2},\n" for n in range(8))
    with pytest.raises(RuntimeError, match="died"):
        await imports(FailingLedger(fail_at=2)).run(admin, roster.encode(), dry_run=False)
    async with sessions() as s:
        written = set(await s.scalars(select(User.username).where(User.role == "student")))
        classes = set(await s.scalars(select(Class.name)))
    assert written == {"s00", "s01", "s02"}  # batch 1 only, whole
    assert classes == {"Class 0", "Class 1"}

    report = await imports(Ledger(b"test-ledger-key")).run(admin, roster.encode(), dry_run=False)
    assert [r.action for r in report.rows] == ["unchanged"] * 3 + ["create"] * 5
    assert report.summary.batches == 2
    assert report.classes_created == []
    async with sessions() as s:
        assert (
            await s.scalar(select(func.count()).select_from(User).where(User.role == "student"))
            == 8
        )
        assert await s.scalar(select(func.count()).select_from(ClassStudent)) == 8
        assert await s.scalar(select(func.count()).select_from(Class)) == 2
    # the passwords of batch 1 never reached anyone: reissued to those who never chose theirs
    reissued = await imports(Ledger(b"test-ledger-key")).run(
        admin, roster.encode(), dry_run=False, reissue_passwords=True
    )
    assert {p.username for p in reissued.passwords} == {f"s{n:02}" for n in range(8)}


async def test_users_created_meanwhile_stop_the_import_with_a_clear_code(
    sessions: async_sessionmaker[AsyncSession], imports: Callable[[Ledger], UserImports]
) -> None:
    admin = Principal(await add_user(sessions, "root", "admin"), "root", "admin")
    roster = HEADER + "".join(f"s{n},S {n},student,,\n" for n in range(6))

    service = imports(Ledger(b"test-ledger-key"))
    hash_batch = service._hash

    async def racing(*args: Any) -> Any:
        """Someone creates s4 after batch 1 committed, before batch 2 is written."""
        if args[1][0].username == "s3":
            await add_user(sessions, "s4")
        return await hash_batch(*args)

    service._hash = racing  # type: ignore[method-assign]
    with pytest.raises(Conflict, match="run the import again") as conflict:
        await service.run(admin, roster.encode(), dry_run=False)
    assert conflict.value.code == "import_conflict"
    assert len(conflict.value.details["passwords"]) == 3  # batch 1's, shown once


# The CLI, as a real process.


def test_the_cli_dry_runs_then_imports_and_writes_passwords_to_a_file(tmp_path: Path) -> None:
    """The command on the embedded database (each run is a process start, ~3 s; what the
    import does on PostgreSQL is the REST tests' on both backends, through the same service)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
    env = {
        "EXAMSERVER_DATABASE_URL": url,
        "EXAMSERVER_JWT_SECRET": TEST_SECRET,
        "EXAMSERVER_LEDGER_KEY": TEST_SECRET + "-ledger",
        "EXAMSERVER_PASSWORD_HASH_COST": "256",
    }
    assert examserver("migrate", env=env).returncode == 0
    roster = tmp_path / "roster.csv"
    roster.write_text(HEADER + "root,Root,admin,,\n")
    # no admin yet: nobody to act as
    nobody = examserver("import-users", str(roster), env=env)
    assert nobody.returncode == 1
    assert "no staff user" in nobody.stderr
    assert examserver("seed-demo", env=env).returncode == 0

    roster.write_text(ROSTER)
    dry = examserver("import-users", str(roster), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert (
        "3 rows: 3 create, 0 update, 0 unchanged, 0 refused; 2 new classes; would be" in dry.stdout
    )
    assert "line     2  create" in dry.stdout

    bad = tmp_path / "bad.csv"
    bad.write_text(ROSTER + "x y,Bad,student,,\n")
    refused = examserver("import-users", str(bad), env=env)
    assert refused.returncode == 1
    assert "invalid_username" in refused.stdout
    assert "nothing was written" in refused.stdout

    slips = tmp_path / "passwords.csv"
    applied = examserver("import-users", str(roster), "--passwords-out", str(slips), env=env)
    assert applied.returncode == 0, applied.stderr
    assert "2 generated passwords written to" in applied.stdout
    assert CHOSEN not in applied.stdout
    assert slips.stat().st_mode & 0o077 == 0
    written = list(csv.DictReader(io.StringIO(slips.read_text())))
    assert [w["username"] for w in written] == ["ada", "mr_k"]
    assert all(w["password"] not in applied.stdout for w in written)

    again = examserver("import-users", str(roster), "--passwords-out", str(slips), env=env)
    assert again.returncode == 2
    assert "exists" in again.stderr
    again = examserver("import-users", str(roster), "--as", "teacher", env=env)
    assert again.returncode == 1  # a teacher may not name a teacher
    assert "role_not_allowed" in again.stdout
    rerun = examserver("import-users", str(roster), env=env)
    assert rerun.returncode == 0
    assert "0 create, 0 update, 3 unchanged" in rerun.stdout


async def test_the_import_has_its_own_body_limit(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await add_user(sessions, "admin", "admin")
    small = settings.model_copy(update={"import_max_bytes": 200, "max_body_bytes": 100_000})
    async with running_server(small) as served:
        api = await Api.login(served.url, "admin")
        try:
            big = HEADER + "".join(f"user{n},User {n},student,,\n" for n in range(20))
            reply = await send(api, big, dry_run=True)
            assert reply.status_code == 413
            assert reply.json()["error"]["code"] == "payload_too_large"
            assert (await send(api, HEADER + "ok,Ok,student,,\n", dry_run=True)).status_code == 200
        finally:
            await api.close()


async def test_a_dry_run_tells_nobody_whether_a_guess_is_a_users_password(world: World) -> None:
    """A teacher who does not teach student1 cannot learn their (temporary) password by
    trying guesses in dry runs: the right guess and a wrong one get the same answer."""
    student_id = (await world.student.get("/auth/me"))["id"]
    await world.admin.post(f"/users/{student_id}/password", {"password": "a temporary phrase"})

    async def dry(guess: str) -> object:
        reply = await world.teacher2.http.post(
            "/users/import", params={"dry_run": "true"},
            content=HEADER + f"student1,Student1,student,,{guess}\n",
            headers={"content-type": "text/csv"},
        )  # fmt: skip
        return [(r["action"], r["code"], r["changes"]) for r in reply.json()["rows"]]

    assert await dry("a temporary phrase") == await dry("a wrong guess of it")


async def test_a_user_changed_between_the_plan_and_its_batch_is_not_overwritten(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The plan read student1 at token version 0; they chose a new password (version 1)
    while the import hashed. The batch refuses rather than put the file's over theirs."""
    admin_id = await add_user(sessions, "boss", "admin")
    student_id = await add_user(sessions, "pupil")
    async with sessions() as s, s.begin():
        await s.execute(update(User).where(User.id == student_id).values(token_version=1))
    row = Outcome(
        2, "pupil", "Pupil", "student", "update", changes=("password",), password="set",
        user_id=student_id, read_version=0,
    )  # fmt: skip
    with pytest.raises(Changed):
        await write_batch(
            sessions, Ledger(settings.ledger_key.encode()),
            principal=Principal(admin_id, "boss", "admin"), import_id=uuid.uuid4(), number=1,
            batch=[row], secrets_={2: ("scrypt$x", None)}, class_ids={}, given_temporary=True,
        )  # fmt: skip
    async with sessions() as s:
        stored = await s.scalar(select(User.password_hash).where(User.id == student_id))
    assert stored != "scrypt$x"
