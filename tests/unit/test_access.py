"""Who may see and manage a class, a session and an attempt, from the facts already loaded
(domain/access.py): every role against every relation to the class."""

from __future__ import annotations

import uuid

import pytest

from delivery_service.domain.access import (
    AttemptAccess,
    attempt_access,
    class_access,
    manages,
    manages_all,
    needs_teaches,
    sees,
    session_access,
)
from delivery_service.domain.errors import Forbidden, NotFound
from delivery_service.domain.principal import Principal, Role

CLASS = uuid.UUID("00000000-0000-0000-0000-0000000000c1")
SESSION = uuid.UUID("00000000-0000-0000-0000-0000000000e1")
ATTEMPT = uuid.UUID("00000000-0000-0000-0000-0000000000a1")


def who(role: Role) -> Principal:
    return Principal(user_id=uuid.uuid4(), username=role, role=role)


ADMIN, TEACHER, STUDENT = who("admin"), who("teacher"), who("student")

# (role, teaches the class, enrolled in it) -> (sees it, manages it)
MATRIX = [
    ("admin", False, False, True, True),
    ("admin", True, False, True, True),
    ("teacher", True, False, True, True),
    ("teacher", False, False, False, False),
    ("teacher", False, True, False, False),  # a teacher is never "enrolled"
    ("student", False, True, True, False),
    ("student", False, False, False, False),
    ("student", True, False, False, False),  # a student is never a teacher
]


@pytest.mark.parametrize(("role", "teaches", "enrolled", "visible", "managing"), MATRIX)
def test_who_sees_and_manages_a_class_follows_role_and_relation(
    role: Role, teaches: bool, enrolled: bool, visible: bool, managing: bool
) -> None:
    actor = who(role)
    assert sees(actor, teaches_class=teaches, enrolled_in_class=enrolled) is visible
    assert manages(actor, teaches_class=teaches) is managing


def test_only_an_admin_manages_everything_without_a_lookup() -> None:
    assert manages_all(ADMIN)
    assert not manages_all(TEACHER)
    assert not manages_all(STUDENT)


def test_an_admin_manages_a_session_of_a_class_they_do_not_teach() -> None:
    session_access(ADMIN, SESSION, teaches_class=False, enrolled_in_class=False, manage=True)


def test_a_teacher_manages_the_sessions_of_a_class_they_teach() -> None:
    session_access(TEACHER, SESSION, teaches_class=True, enrolled_in_class=False, manage=True)


def test_a_teacher_of_another_class_is_refused_a_session_with_forbidden() -> None:
    with pytest.raises(Forbidden, match="belongs to a class you do not teach"):
        session_access(TEACHER, SESSION, teaches_class=False, enrolled_in_class=False, manage=False)


def test_a_student_outside_the_class_is_not_told_the_session_exists() -> None:
    with pytest.raises(NotFound, match=f"session {SESSION} not found") as refused:
        session_access(STUDENT, SESSION, teaches_class=False, enrolled_in_class=False, manage=False)
    assert refused.value.code == "session_not_found"


def test_an_enrolled_student_sees_the_session_but_cannot_manage_it() -> None:
    session_access(STUDENT, SESSION, teaches_class=False, enrolled_in_class=True, manage=False)
    with pytest.raises(Forbidden, match="only the class's teachers or an admin can manage"):
        session_access(STUDENT, SESSION, teaches_class=False, enrolled_in_class=True, manage=True)


def test_an_enrolled_student_sees_the_class_but_cannot_manage_it() -> None:
    class_access(STUDENT, CLASS, teaches_class=False, enrolled_in_class=True, manage=False)
    with pytest.raises(Forbidden, match="only the class's teachers or an admin can do this"):
        class_access(STUDENT, CLASS, teaches_class=False, enrolled_in_class=True, manage=True)


def test_a_student_outside_the_class_is_not_told_the_class_exists() -> None:
    with pytest.raises(NotFound) as refused:
        class_access(STUDENT, CLASS, teaches_class=False, enrolled_in_class=False, manage=False)
    assert refused.value.code == "class_not_found"


def test_a_teacher_of_another_class_is_refused_the_class_with_forbidden() -> None:
    with pytest.raises(Forbidden, match="this class belongs to a class you do not teach"):
        class_access(TEACHER, CLASS, teaches_class=False, enrolled_in_class=False, manage=True)


# ---- attempts -------------------------------------------------------------------------------


@pytest.mark.parametrize("access", ["owner", "read"])
def test_a_candidate_reads_and_acts_in_their_own_attempt(access: AttemptAccess) -> None:
    attempt_access(ATTEMPT, STUDENT.user_id, STUDENT, access)


@pytest.mark.parametrize("access", ["owner", "read", "staff"])
def test_another_candidates_attempt_does_not_exist_for_a_student(access: AttemptAccess) -> None:
    with pytest.raises(NotFound) as refused:
        attempt_access(ATTEMPT, uuid.uuid4(), STUDENT, access)
    assert refused.value.code == "attempt_not_found"


def test_a_candidate_cannot_act_as_staff_in_their_own_attempt() -> None:
    with pytest.raises(Forbidden, match="only a proctor or an admin"):
        attempt_access(ATTEMPT, STUDENT.user_id, STUDENT, "staff")


@pytest.mark.parametrize("access", ["read", "staff"])
def test_a_teacher_of_the_attempts_class_reads_it_and_acts_as_staff(
    access: AttemptAccess,
) -> None:
    attempt_access(ATTEMPT, STUDENT.user_id, TEACHER, access, teaches=True)


@pytest.mark.parametrize("access", ["read", "staff", "owner"])
def test_a_teacher_of_another_class_is_refused_the_attempt_with_forbidden(
    access: AttemptAccess,
) -> None:
    with pytest.raises(Forbidden, match="belongs to a class you do not teach"):
        attempt_access(ATTEMPT, STUDENT.user_id, TEACHER, access, teaches=False)


@pytest.mark.parametrize("staff", [ADMIN, TEACHER])
def test_staff_never_act_as_the_candidate(staff: Principal) -> None:
    with pytest.raises(Forbidden, match="only the candidate can do this"):
        attempt_access(ATTEMPT, STUDENT.user_id, staff, "owner", teaches=True)


@pytest.mark.parametrize("access", ["read", "staff"])
def test_an_admin_reads_and_acts_on_any_attempt(access: AttemptAccess) -> None:
    attempt_access(ATTEMPT, STUDENT.user_id, ADMIN, access, teaches=False)


@pytest.mark.parametrize("actor", [ADMIN, TEACHER, STUDENT])
def test_a_missing_attempt_is_not_found_for_everyone(actor: Principal) -> None:
    with pytest.raises(NotFound):
        attempt_access(ATTEMPT, None, actor, "read", teaches=True)


@pytest.mark.parametrize(
    ("role", "access", "needed"),
    [
        ("teacher", "read", True),
        ("teacher", "staff", True),
        ("teacher", "owner", False),
        ("admin", "read", False),
        ("admin", "staff", False),
        ("student", "read", False),
        ("student", "staff", False),
    ],
)
def test_only_a_teachers_read_or_staff_access_needs_the_teaching_lookup(
    role: Role, access: AttemptAccess, needed: bool
) -> None:
    assert needs_teaches(who(role), access) is needed
