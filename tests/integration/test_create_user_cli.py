"""`examserver create-user`: the first administrator of a fresh database, from the command
line, with the password from stdin (never argv) and weak ones refused."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from delivery_service.security.passwords import verify_password
from delivery_service.storage.migrate import upgrade
from tests.support import TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]


def create_user(db: Path, *args: str, password: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "EXAMSERVER_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "EXAMSERVER_REDIS_URL": "memory://",
        "EXAMSERVER_JWT_SECRET": TEST_SECRET,
        "EXAMSERVER_PASSWORD_HASH_COST": "256",
        "EXAMSERVER_ENVIRONMENT": "test",
    }
    return subprocess.run(
        [sys.executable, "-m", "delivery_service", "create-user", *args],
        input=password + "\n", env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_the_first_admin_is_created_from_stdin_and_weak_or_taken_ones_refused(
    tmp_path: Path,
) -> None:
    db = tmp_path / "fresh.db"
    upgrade(f"sqlite+aiosqlite:///{db}")

    weak = create_user(db, "head", "--role", "admin", password="password1234")
    assert weak.returncode == 1
    assert "weak_password" in weak.stderr

    made = create_user(
        db, "head", "--role", "admin", "--display-name", "Head of Exams",
        password="a long and unusual passphrase",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("created admin head")
    assert "unusual" not in made.stdout + made.stderr

    taken = create_user(db, "head", "--role", "teacher", password="another long passphrase")
    assert taken.returncode == 1
    assert "username_taken" in taken.stderr

    empty = create_user(db, "nobody", "--role", "student", password="")
    assert empty.returncode == 1

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select username, display_name, role, password_hash, must_change_password from users"
        ).fetchall()
        ledger = conn.execute("select type from ledger_events").fetchall()
    assert len(rows) == 1
    username, display_name, role, stored, must_change = rows[0]
    assert (username, display_name, role, must_change) == ("head", "Head of Exams", "admin", 0)
    assert verify_password("a long and unusual passphrase", stored)
    assert ledger == [("user_created",)]
