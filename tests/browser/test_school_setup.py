"""A school's first exam, as a new school runs it: a fresh PostgreSQL database migrated, the
first admin made with `examserver create-user`, 300 students and their teacher imported from a
CSV file on the console (checked first), a paper uploaded as a QTI package, a session scheduled,
its waiting room opened, candidates signing in with their generated passwords (choosing their
own), joining, and answering while the proctor watches. Only the command line, the console and
the candidate app are used; the API is only read at the end, to check what happened.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from test_assembly.model import Blueprint, ChoiceDef, ItemDefinition, SectionDef, TestDefinition
from test_assembly.qti import export_package
from tests.services import REDIS_URL, own_postgres_database, redis_problem, require
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
STUDENTS = 300
CLASS = "Year 11 Chemistry"
ADMIN_PASSWORD = "exam board passphrase forty two"
TEACHER_PASSWORD = "mr khan teaches chemistry"
TEACHER_CHOSEN = "periodic table on the wall"
MINE = "copper sulphate is blue"


@pytest.fixture
def fresh_database() -> Iterator[str]:
    require(redis_problem())
    with own_postgres_database("school") as url:
        yield url


def examserver(env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "delivery_service", *args], input=stdin, env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def roster() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["username", "display_name", "role", "class", "password"])
    writer.writerow(["mr.khan", "Mr Khan", "teacher", CLASS, TEACHER_PASSWORD])
    for n in range(1, STUDENTS + 1):
        writer.writerow([f"s{n:03d}", f"Student {n:03d}", "student", CLASS, ""])
    return out.getvalue().encode()


def paper() -> bytes:
    def item(ident: str, prompt: str, options: list[str], right: int) -> ItemDefinition:
        return ItemDefinition(
            identifier=ident, prompt=prompt,
            choices=[ChoiceDef(identifier=f"c{i}", text=t) for i, t in enumerate(options)],
            correct=[f"c{right}"],
        )  # fmt: skip

    return export_package(
        TestDefinition(
            identifier="y11-mock",
            title="Year 11 chemistry mock",
            time_limit_seconds=1800,
            navigation_mode="nonlinear",
            attempt_limit=1,
            blueprint=Blueprint(sections=[SectionDef(identifier="main", items=["q1", "q2"])]),
            items=[
                item("q1", "What colour is copper sulphate?", ["Blue", "Green", "Red"], 0),
                item("q2", "What is the symbol for sodium?", ["S", "Na", "So"], 1),
            ],
        )
    )


async def sign_in(page: Page, url: str, username: str, password: str) -> None:
    await page.goto(url)
    await page.fill("#login-form input[name=username]", username)
    await page.fill("#login-form input[name=password]", password)
    await page.keyboard.press("Enter")


async def choose_password(page: Page, password: str) -> None:
    form = page.locator("form.choose-password")
    await form.locator("input[name=new]").fill(password)
    await form.locator("input[name=again]").fill(password)
    await form.locator("button").click()
    await expect(form).to_have_count(0)


def watch(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


async def test_a_school_goes_from_migrate_to_a_running_proctored_exam(
    browser: Browser, fresh_database: str, tmp_path: Path
) -> None:
    port = free_port()
    env = os.environ | {
        "EXAMSERVER_DATABASE_URL": fresh_database,
        "EXAMSERVER_REDIS_URL": REDIS_URL,
        "EXAMSERVER_REDIS_PREFIX": f"school{uuid.uuid4().hex[:8]}:exam:v1",
        "EXAMSERVER_JWT_SECRET": secrets.token_urlsafe(48),
        "EXAMSERVER_LEDGER_KEY": secrets.token_urlsafe(48),
        "EXAMSERVER_ALLOWED_ORIGINS": f'["http://127.0.0.1:{port}"]',
    }
    examserver(env, "migrate")
    made = examserver(env, "create-user", "head", "--role", "admin", stdin=ADMIN_PASSWORD + "\n")
    assert made.startswith("created admin head")

    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "delivery_service", "serve", "--port", str(port)],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the server never became ready")
        await run_the_exam(browser, base, tmp_path)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


async def run_the_exam(browser: Browser, base: str, tmp_path: Path) -> None:
    (tmp_path / "roster.csv").write_bytes(roster())
    (tmp_path / "paper.zip").write_bytes(paper())
    problems: list[str] = []

    # The admin imports the school's roster: checked first, then imported.
    head_context = await browser.new_context()
    head = await head_context.new_page()
    problems += watch(head)
    await sign_in(head, f"{base}/console/users.html", "head", ADMIN_PASSWORD)
    await expect(head.locator("#count")).to_have_text("1–1 of 1")
    await head.set_input_files("#import input[name=file]", str(tmp_path / "roster.csv"))
    await head.click("#check")
    await expect(head.locator("#import-status")).to_contain_text(
        f"Checked {STUDENTS + 1} rows: {STUDENTS + 1} to create", timeout=60_000
    )
    await expect(head.locator("#report tbody tr")).to_have_count(STUDENTS + 1)
    await head.click("#apply")
    await expect(head.locator("#import-status")).to_contain_text(
        f"Imported {STUDENTS + 1} rows", timeout=120_000
    )
    passwords = head.locator("#passwords tbody tr")
    await expect(passwords).to_have_count(STUDENTS)
    issued = {}
    for n in (1, 2, 3):
        line = passwords.filter(has_text=f"s{n:03d}")
        issued[f"s{n:03d}"] = (await line.locator("td.secret").inner_text()).strip()
    await expect(head.locator("#count")).to_contain_text(f"of {STUDENTS + 2}")

    # The paper, as a QTI package.
    await head.goto(f"{base}/console/tests.html")
    await head.set_input_files("#qti-upload input[name=file]", str(tmp_path / "paper.zip"))
    await head.click("#qti-upload button[type=submit]")
    await expect(head.locator("#qti-said")).to_contain_text("imported", timeout=30_000)
    await head_context.close()

    # The teacher schedules the session and opens its waiting room.
    teacher_context = await browser.new_context()
    teacher = await teacher_context.new_page()
    problems += watch(teacher)
    await sign_in(teacher, f"{base}/console/", "mr.khan", TEACHER_PASSWORD)
    await choose_password(teacher, TEACHER_CHOSEN)  # the file's password was a temporary one
    await expect(teacher.locator("#schedule")).to_be_visible()
    starts = (datetime.now() + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M")
    await teacher.select_option("#schedule select[name=class_id]", label=CLASS)
    await teacher.select_option("#schedule select[name=test_id]", label="Year 11 chemistry mock")
    await teacher.fill("#schedule input[name=title]", "Chemistry mock")
    await teacher.fill("#schedule input[name=scheduled_at]", starts)
    await teacher.click("#schedule button[type=submit]")
    await expect(teacher.locator("#session-title")).to_contain_text("Chemistry mock")
    await expect(teacher.locator("#grid tbody tr")).to_have_count(STUDENTS)
    await teacher.click("#open-waiting")
    await expect(teacher.locator("#session-state")).to_have_text("waiting")

    # Three candidates sign in with their generated passwords, choose their own, and wait.
    candidates = []
    for username, password in issued.items():
        context = await browser.new_context()
        page = await context.new_page()
        problems += watch(page)
        await sign_in(page, f"{base}/", username, password)
        await choose_password(page, f"{MINE} and {len(candidates)} more")
        await expect(page.locator("#tests button")).to_have_count(0)  # the paper is the session's
        await page.click("#sessions button >> text=Chemistry mock")
        await expect(page.locator("#waiting-text")).to_contain_text("waiting room")
        candidates.append((context, page))
    for username in issued:
        row = teacher.locator("#grid tbody tr", has_text=username)
        await expect(row).to_contain_text("online")

    await teacher.click("#start")
    await expect(teacher.locator("#session-state")).to_have_text("in_progress")
    for _, page in candidates:
        await expect(page.locator("#item-title")).to_have_text("Question 1 of 2", timeout=15_000)
        await page.click("#choices label >> text=Blue")
        await expect(page.locator("#saved")).to_have_text("All answers saved")
    for username in issued:
        row = teacher.locator("#grid tbody tr", has_text=username)
        await expect(row.locator("td").nth(4)).to_have_text("1/2")

    # Checked over the API: the roster, the answers, and who never signed in.
    token = (
        httpx.post(f"{base}/api/v1/auth/login",
                   json={"username": "mr.khan", "password": TEACHER_CHOSEN})
        .json()["access_token"]
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"}
    sessions = httpx.get(f"{base}/api/v1/sessions", headers=auth).json()
    (session,) = sessions
    grid = httpx.get(f"{base}/api/v1/sessions/{session['id']}/participants", headers=auth).json()
    assert len(grid) == STUDENTS
    answered = {p["student"]["username"]: p["answered"] for p in grid if p["answered"]}
    assert answered == dict.fromkeys(issued, 1)
    for context, _ in candidates:
        await context.close()
    await teacher_context.close()
    assert problems == []
