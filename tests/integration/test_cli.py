"""The commands a newcomer and an operator type, run as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.services import postgres_problem, require
from tests.support import TEST_SECRET, free_port

ROOT = Path(__file__).resolve().parents[2]


def examserver(
    *args: str, env: dict[str, str], unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in unset} | env
    return subprocess.run(
        [sys.executable, "-m", "delivery_service", *args],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_demo_starts_with_demo_users_and_a_sample_test(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "delivery_service", "demo", "--port", str(port),
             "--database", str(tmp_path / "demo.db")],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"the demo never became ready:\n{log.read_text()}")
        login = httpx.post(
            f"{base}/api/v1/auth/login", json={"username": "student30", "password": "demo"}
        )
        assert login.status_code == 200
        token = login.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        # The sample exam is assigned to the student's class; the session's paper is not theirs
        # to take self-paced, so it is not listed.
        tests = httpx.get(f"{base}/api/v1/tests", headers=auth).json()
        assert [t["title"] for t in tests] == ["Sample exam: general knowledge"]
        started = httpx.post(f"{base}/api/v1/attempts", json={"test_id": tests[0]["id"]},
                             headers=auth)  # fmt: skip
        assert started.status_code == 201, started.text
        mine = httpx.get(f"{base}/api/v1/sessions/my-sessions", headers=auth).json()
        assert [(m["title"], m["class_name"], m["state"]) for m in mine] == [
            ("Beacon 31 mock exam", "Beacon 31", "scheduled")
        ]
        paper = httpx.post(f"{base}/api/v1/attempts", json={"test_id": mine[0]["test_id"]},
                           headers=auth)  # fmt: skip
        assert paper.status_code == 409
        assert paper.json()["error"]["code"] == "reserved_for_session"
        # Scheduled within the lead time: the demo's proctor can open it at once.
        teacher = httpx.post(
            f"{base}/api/v1/auth/login", json={"username": "teacher", "password": "demo"}
        ).json()["access_token"]
        opened = httpx.post(f"{base}/api/v1/sessions/{mine[0]['id']}/start-waiting",
                            headers={"Authorization": f"Bearer {teacher}"})  # fmt: skip
        assert opened.status_code == 200, opened.text
        console = httpx.get(f"{base}/console/")
        assert console.status_code == 200
        assert "Proctor console" in console.text
        printed = log.read_text()
        assert f"{base}/docs" in printed
        assert 'password is "demo"' in printed
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=20)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrate_and_seed_demo_load_any_database_and_can_run_twice(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":
        require(postgres_problem())
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
    env = {
        "EXAMSERVER_DATABASE_URL": url,
        "EXAMSERVER_JWT_SECRET": TEST_SECRET,
        "EXAMSERVER_LEDGER_KEY": TEST_SECRET + "-ledger",
        "EXAMSERVER_PASSWORD_HASH_COST": "256",
    }
    migrated = examserver("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    first = examserver("seed-demo", env=env)
    second = examserver("seed-demo", env=env)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "32 users created" in first.stdout
    assert "0 users created" in second.stdout


def test_serve_refuses_to_start_with_the_public_demo_secret() -> None:
    refused = examserver("serve", env={}, unset=("EXAMSERVER_JWT_SECRET", "EXAMSERVER_ENVIRONMENT"))
    assert refused.returncode == 2
    assert "EXAMSERVER_JWT_SECRET must be set" in refused.stderr


def test_a_worker_writes_json_log_lines_with_request_ids_and_no_secrets(tmp_path: Path) -> None:
    env = os.environ | {
        "EXAMSERVER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'logs.db'}",
        "EXAMSERVER_REDIS_URL": "memory://",
        "EXAMSERVER_JWT_SECRET": TEST_SECRET,
        "EXAMSERVER_LEDGER_KEY": TEST_SECRET + "-ledger",
        "EXAMSERVER_LOG_FORMAT": "json",
        "EXAMSERVER_DRAIN_SECONDS": "0",
    }
    assert examserver("migrate", env=env).returncode == 0
    port = free_port()
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "delivery_service", "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", headers={"X-Request-ID": "trace-7"}).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        httpx.post(f"{base}/api/v1/auth/login", json={"username": "x", "password": "hunter2"})
        httpx.get(f"{base}/api/v1/attempts/00000000-0000-0000-0000-000000000000/ws?ticket=s3cret")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert any(line.get("request_id") == "trace-7" for line in lines), lines
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    text = log.read_text()
    assert "s3cret" not in text
    assert "hunter2" not in text
    assert "ticket=***" in text
