"""Demo data: users, the class "Beacon 31" with every demo student, a sample test assigned to
it to take self-paced, and a session of it (with its own paper) ready to open. Passwords are
`demo`: for trying the server, never for a real exam."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.schemas.tests import TestIn
from delivery_service.security.passwords import hash_password
from delivery_service.services.catalog import add_test
from delivery_service.storage.database import db_now
from delivery_service.storage.models import (
    Class,
    ClassStudent,
    ClassTeacher,
    GroupSession,
    Test,
    User,
)
from integrity.policy import LockdownPolicy
from test_assembly.model import ChoiceDef, ItemDefinition

DEMO_PASSWORD = "demo"
SAMPLE_TITLE = "Sample exam: general knowledge"
SESSION_TEST_TITLE = "Beacon 31 mock exam paper"
DEMO_CLASS = "Beacon 31"
DEMO_SESSION = "Beacon 31 mock exam"


def demo_users() -> list[tuple[str, str, str]]:
    users = [("admin", "Ada Admin", "admin"), ("teacher", "Tom Teacher", "teacher")]
    users += [(f"student{n}", f"Student {n}", "student") for n in range(1, 31)]
    return users


def sample_test(title: str = SAMPLE_TITLE) -> TestIn:
    def choice(ident: str, prompt: str, options: list[str], correct: list[int]) -> ItemDefinition:
        letters = "ABCDEFGH"
        return ItemDefinition(
            identifier=ident,
            prompt=prompt,
            choices=[ChoiceDef(identifier=letters[i], text=t) for i, t in enumerate(options)],
            correct=[letters[i] for i in correct],
        )

    return TestIn(
        title=title,
        time_limit_seconds=20 * 60,
        navigation_mode="nonlinear",
        attempt_limit=3,
        items=[
            choice("q1", "Which planet is closest to the Sun?", ["Venus", "Mercury", "Mars"], [1]),
            choice("q2", "What is 7 × 8?", ["54", "56", "64", "58"], [1]),
            choice(
                "q3",
                "Which of these are prime numbers? (choose all that apply)",
                ["2", "9", "11", "15"],
                [0, 2],
            ),
            choice("q4", "In which year did the Berlin Wall fall?", ["1987", "1989", "1991"], [1]),
            choice("q5", "H₂O is the chemical formula of …", ["salt", "water", "ozone"], [1]),
        ],
    )


async def seed_demo(db: async_sessionmaker[AsyncSession], *, hash_cost: int) -> int:
    """Add whatever demo data is missing; return how many users were created. Idempotent."""
    async with db() as s, s.begin():
        existing = set(await s.scalars(select(User.username)))
        missing = [u for u in demo_users() if u[0] not in existing]
        hashes = await asyncio.gather(
            *(asyncio.to_thread(hash_password, DEMO_PASSWORD, cost=hash_cost) for _ in missing)
        )
        now = await db_now(s)
        for (username, name, role), hashed in zip(missing, hashes, strict=True):
            s.add(
                User(
                    username=username,
                    display_name=name,
                    password_hash=hashed,
                    role=role,
                    created_at=now,
                )
            )
        await s.flush()
        teacher = await s.scalar(select(User).where(User.username == "teacher"))
        if teacher is None:  # pragma: no cover - created just above
            raise RuntimeError("the demo teacher is missing")
        klass = await s.scalar(select(Class).where(Class.name == DEMO_CLASS))
        new_class = klass is None
        if klass is None:
            klass = Class(name=DEMO_CLASS, description="Demo class", state="active",
                          created_by=teacher.id, created_at=now)  # fmt: skip
            s.add(klass)
            await s.flush()
            s.add(ClassTeacher(class_id=klass.id, user_id=teacher.id))
            students = await s.scalars(select(User).where(User.role == "student"))
            for student in students:
                s.add(ClassStudent(class_id=klass.id, user_id=student.id, enrolled_at=now))
        # The sample exam is assigned to the class, so its students can take it self-paced
        # (a demo database from before test audiences existed gets the assignment too).
        sample = await s.scalar(select(Test).where(Test.title == SAMPLE_TITLE))
        if sample is None:
            sample = await add_test(s, sample_test(), created_by=teacher.id)
        if str(klass.id) not in sample.assigned_to:
            sample.assigned_to = [*sample.assigned_to, str(klass.id)]
        # The session has a paper of its own: a session's paper is never taken self-paced,
        # and the sample exam should be.
        test = await s.scalar(select(Test).where(Test.title == SESSION_TEST_TITLE))
        if test is None:
            # The proctored paper shows the lockdown policy at work: fullscreen asked for, and a
            # third departure of 2 s or more marks the attempt for the proctor's review.
            paper = sample_test(SESSION_TEST_TITLE).model_copy(
                update={"lockdown": LockdownPolicy(require_fullscreen=True, allowed_tab_switches=2,
                                                   ignore_absence_under_ms=2000, on_exceed="flag")}
            )  # fmt: skip
            test = await add_test(s, paper, created_by=teacher.id)
        if new_class:
            # Within the waiting room's lead time (EXAMSERVER_SESSION_OPEN_LEAD_MINUTES, 30),
            # so the demo's proctor can open it at once.
            s.add(
                GroupSession(
                    class_id=klass.id,
                    test_id=test.id,
                    title=DEMO_SESSION,
                    state="scheduled",
                    scheduled_at=now + timedelta(minutes=10),
                    created_by=teacher.id,
                    created_at=now,
                )
            )
        return len(missing)
