"""The pure part of the bulk import: reading the CSV, checking rows, deciding what each does."""

from __future__ import annotations

import uuid

import pytest

from delivery_service.domain.errors import Forbidden
from delivery_service.domain.principal import Principal
from delivery_service.domain.user_import import (
    Existing,
    ImportFileError,
    KnownClass,
    Outcome,
    Parsed,
    batches,
    parse,
    plan,
)
from delivery_service.security.password_policy import weakness

HEADER = "username,display_name,role,class,password\n"
GOOD = "violet harbour lantern"
ADMIN = Principal(uuid.uuid4(), "root", "admin")
TEACHER = Principal(uuid.uuid4(), "mrs_h", "teacher")
SEVEN_B = KnownClass(ids=(uuid.uuid4(),), taught_by_actor=True)
EIGHT_A = KnownClass(ids=(uuid.uuid4(),), taught_by_actor=False)


def read(text: str, *, max_rows: int = 100) -> Parsed:
    return parse(text.encode(), max_rows=max_rows, weakness=lambda p, u: weakness(p, username=u))


def decide(
    text: str,
    actor: Principal = ADMIN,
    existing: dict[str, Existing] | None = None,
    same: dict[int, bool] | None = None,
    **kwargs: bool,
) -> list[Outcome]:
    return plan(
        read(text),
        actor=actor,
        existing=existing or {},
        classes={"7b": SEVEN_B, "8a": EIGHT_A},
        same_password=same or {},
        **kwargs,
    ).outcomes


def student(**overrides: object) -> Existing:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "role": "student",
        "display_name": "Ada Lovelace",
        "classes": frozenset({"7b"}),
        "member": True,
        "taught_by_actor": True,
    }
    values.update(overrides)
    return Existing(**values)  # type: ignore[arg-type]


def test_rows_are_read_with_their_line_numbers_and_classes_split() -> None:
    parsed = read(
        HEADER
        + "ada,Ada Lovelace,Student,7B; 8A ;,\n"
        + "\n"
        + f'grace,"Hopper,\nGrace",teacher,,{GOOD}\n'
        + "linus,Linus,admin,,\n"
    )
    assert parsed.refusals == []
    ada, grace, linus = parsed.rows
    assert (ada.line, ada.role, ada.classes, ada.password) == (2, "student", ("7B", "8A"), None)
    assert (grace.line, grace.display_name, grace.password) == (4, "Hopper,\nGrace", GOOD)
    assert linus.line == 6


def test_a_password_never_appears_in_a_rows_repr() -> None:
    (row,) = read(HEADER + f"ada,Ada,student,,{GOOD}\n").rows
    assert GOOD not in repr(row)


def test_columns_may_come_in_any_order_and_password_may_be_left_out() -> None:
    (row,) = read("Role, Username ,class,display_name\nstudent,ada,7B,Ada\n").rows
    assert (row.username, row.role, row.classes, row.password) == ("ada", "student", ("7B",), None)


def test_a_spreadsheets_byte_order_mark_is_ignored() -> None:
    parsed = parse(
        b"\xef\xbb\xbf" + (HEADER + "ada,Ada,student,,\n").encode(),
        max_rows=10,
        weakness=lambda p, u: None,
    )
    assert [r.username for r in parsed.rows] == ["ada"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "csv_empty"),
        (b"  \n\n", "csv_empty"),
        (b"ada,Ada,student,,\n", "csv_no_header"),
        (b"username,display_name,role\n", "csv_bad_columns"),
        (b"username,display_name,role,class,password,email\n", "csv_bad_columns"),
        (b"username,username,display_name,role,class\n", "csv_bad_columns"),
        (b"username;display_name;role;class\n", "csv_bad_columns"),
        (HEADER.encode() + b"ad\xe9le,Ad\xe9le,student,,\n", "csv_not_utf8"),
        (HEADER.encode() + b'ada,"Ada,student,,\n', "csv_malformed"),
    ],
)
def test_a_file_that_cannot_be_read_as_the_import_is_refused_whole(data: bytes, code: str) -> None:
    with pytest.raises(ImportFileError) as refused:
        parse(data, max_rows=10, weakness=lambda p, u: None)
    assert refused.value.code == code


def test_not_utf8_names_the_line() -> None:
    data = HEADER.encode() + b"ada,Ada,student,,\nad\xe9le,Ad\xe9le,student,,\n"
    with pytest.raises(ImportFileError, match="line 3"):
        parse(data, max_rows=10, weakness=lambda p, u: None)


def test_more_rows_than_the_limit_is_refused() -> None:
    rows = "".join(f"s{n},S {n},student,,\n" for n in range(4))
    assert len(read(HEADER + rows, max_rows=4).rows) == 4
    with pytest.raises(ImportFileError, match="more than 3 rows") as refused:
        read(HEADER + rows, max_rows=3)
    assert refused.value.code == "csv_too_many_rows"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("ada,Ada,student,\n", "wrong_field_count"),
        ("ada,Ada,student,,,\n", "wrong_field_count"),
        ("ada,Ada\x07,student,,\n", "invalid_value"),
        (" ,Ada,student,,\n", "invalid_username"),
        ("ada lovelace,Ada,student,,\n", "invalid_username"),
        ("ada/b,Ada,student,,\n", "invalid_username"),
        ("a" * 65 + ",Ada,student,,\n", "invalid_username"),
        ("ada,,student,,\n", "invalid_display_name"),
        ("ada,Ada,pupil,,\n", "invalid_role"),
        ("ada,Ada,student," + "c" * 101 + ",\n", "invalid_class"),
        ("ada,Ada,student,,short\n", "weak_password"),
        ("ada,Ada,student,,Password2026!\n", "weak_password"),
        ("ada,Ada,student,,ada-is-my-name-ok\n", "weak_password"),
    ],
)
def test_a_bad_row_is_refused_with_its_line_and_a_code(line: str, code: str) -> None:
    parsed = read(HEADER + "ok,Fine,student,,\n" + line)
    assert [r.username for r in parsed.rows] == ["ok"]
    (refusal,) = parsed.refusals
    assert (refusal.line, refusal.code) == (3, code)
    assert refusal.reason


def test_a_username_twice_in_the_file_is_refused_at_its_second_line() -> None:
    parsed = read(HEADER + "ada,Ada,student,,\nbob,Bob,student,,\nADA,Ada,student,,\n")
    (refusal,) = parsed.refusals
    assert (refusal.line, refusal.code) == (4, "duplicate_username")
    assert "line 2" in refusal.reason


def test_an_admins_import_creates_users_and_classes_that_do_not_exist() -> None:
    decided = plan(
        read(HEADER + f"ada,Ada,student,7B;9C,\nbob,Bob,teacher,9c,{GOOD}\nroot2,R,admin,,\n"),
        actor=ADMIN,
        existing={},
        classes={"7b": SEVEN_B},
        same_password={},
    )
    assert decided.ok
    assert [(o.action, o.password, o.classes_added) for o in decided.outcomes] == [
        ("create", "generated", ("7B", "9C")),
        ("create", "set", ("9c",)),
        ("create", "generated", ()),
    ]
    assert decided.new_classes == ["9C"]  # as first spelled


def test_a_row_that_matches_the_user_as_they_are_is_unchanged() -> None:
    ada = student(classes=frozenset({"7b", "8a"}))
    (outcome,) = decide(HEADER + f"ada,Ada Lovelace,student,7b,{GOOD}\n", existing={"ada": ada},
                        same={2: True})  # fmt: skip
    assert (outcome.action, outcome.changes, outcome.user_id) == ("unchanged", (), ada.id)


def test_an_existing_user_is_updated_and_only_added_to_classes() -> None:
    ada = student(classes=frozenset({"8a"}), must_change_password=True)
    (outcome,) = decide(
        HEADER + f"ada,Ada King,student,7B;8A,{GOOD}\n", existing={"ada": ada}, same={2: False}
    )
    assert outcome.action == "update"
    assert outcome.changes == ("display_name", "password", "classes")
    assert (outcome.classes_added, outcome.password) == (("7B",), "set")


def test_a_password_the_user_chose_is_never_replaced_by_a_file() -> None:
    (outcome,) = decide(
        HEADER + f"ada,Ada Lovelace,student,7B,{GOOD}\n",
        existing={"ada": student(must_change_password=False)},
        same={2: False},
    )
    assert (outcome.action, outcome.changes, outcome.password) == ("unchanged", (), None)


def test_an_existing_user_without_a_password_in_the_file_keeps_theirs() -> None:
    (outcome,) = decide(
        HEADER + "ada,Ada Lovelace,student,7B,\n",
        existing={"ada": student(must_change_password=True)},
    )
    assert (outcome.action, outcome.password) == ("unchanged", None)


def test_reissue_gives_a_new_password_only_to_users_who_never_chose_their_own() -> None:
    existing = {
        "ada": student(must_change_password=True),
        "bob": student(display_name="Bob"),
    }
    ada, bob = decide(
        HEADER + "ada,Ada Lovelace,student,7B,\nbob,Bob,student,7B,\n",
        existing=existing,
        reissue_passwords=True,
    )
    assert (ada.action, ada.changes, ada.password) == ("update", ("password",), "generated")
    assert (bob.action, bob.password) == ("unchanged", None)


def test_an_admin_changes_a_role_only_of_a_user_in_no_class() -> None:
    free = student(classes=frozenset(), member=False)
    (outcome,) = decide(HEADER + "ada,Ada Lovelace,teacher,,\n", existing={"ada": free})
    assert (outcome.action, outcome.changes) == ("update", ("role",))
    (outcome,) = decide(HEADER + "ada,Ada Lovelace,teacher,,\n", existing={"ada": student()})
    assert (outcome.action, outcome.code) == ("refused", "role_change_with_classes")


def test_an_import_does_not_change_the_importers_own_account() -> None:
    me = student(role="admin", display_name="Root", member=False, classes=frozenset())
    (outcome,) = decide(HEADER + "root,Root,admin,,\n", existing={"root": me})
    assert outcome.action == "unchanged"
    (outcome,) = decide(HEADER + "root,Root,student,,\n", existing={"root": me})
    assert (outcome.action, outcome.code) == ("refused", "own_account")


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("bob,Bob,teacher,7B,\n", "role_not_allowed"),
        ("bob,Bob,student,,\n", "class_required"),
        ("bob,Bob,student,8A,\n", "class_not_taught"),
        ("bob,Bob,student,7B;9C,\n", "class_not_found"),
    ],
)
def test_a_teacher_imports_students_only_into_classes_they_teach(line: str, code: str) -> None:
    (outcome,) = decide(HEADER + line, actor=TEACHER)
    assert (outcome.action, outcome.code) == ("refused", code)


def test_a_teacher_changes_only_their_own_students_but_may_enrol_others() -> None:
    theirs = student(taught_by_actor=True)
    others = student(taught_by_actor=False, classes=frozenset({"8a"}))
    staff = student(role="teacher", taught_by_actor=False)
    rows = HEADER + (
        "ada,Ada King,student,7B,\n"  # renamed: their student
        "bob,Ada King,student,7B,\n"  # renamed: not theirs
        "cy,Ada Lovelace,student,7B,\n"  # only enrolled in the teacher's class
        "dee,Ada Lovelace,student,7B,\n"  # a teacher named as a student
    )
    ada, bob, cy, dee = decide(
        rows, actor=TEACHER, existing={"ada": theirs, "bob": others, "cy": others, "dee": staff}
    )
    assert (ada.action, ada.changes) == ("update", ("display_name",))
    assert (bob.action, bob.code) == ("refused", "not_your_student")
    assert (cy.action, cy.changes, cy.classes_added) == ("update", ("classes",), ("7B",))
    assert (dee.action, dee.code) == ("refused", "role_not_allowed")


def test_an_admin_is_not_put_in_a_class_and_an_ambiguous_name_is_refused() -> None:
    decided = plan(
        read(HEADER + "root2,Root,admin,7B,\nada,Ada,student,Twin,\n"),
        actor=ADMIN,
        existing={},
        classes={"twin": KnownClass(ids=(uuid.uuid4(), uuid.uuid4()), taught_by_actor=False)},
        same_password={},
    )
    assert [o.code for o in decided.outcomes] == ["admin_in_class", "ambiguous_class"]
    assert not decided.ok
    assert decided.new_classes == []  # only rows that apply create a class


def test_a_student_may_not_import() -> None:
    with pytest.raises(Forbidden):
        decide(HEADER, actor=Principal(uuid.uuid4(), "kid", "student"))


def test_refusals_and_outcomes_come_in_file_order() -> None:
    outcomes = decide(HEADER + "ada,Ada,student,,\nbad name,B,student,,\ncy,Cy,student,,\n")
    assert [(o.line, o.action) for o in outcomes] == [
        (2, "create"),
        (3, "refused"),
        (4, "create"),
    ]


def test_batches_hold_only_the_rows_that_write() -> None:
    outcomes = [
        Outcome(n, f"u{n}", "U", "student", "unchanged" if n % 3 == 0 else "create")
        for n in range(2, 12)
    ]
    assert [[o.line for o in b] for b in batches(outcomes, 3)] == [
        [2, 4, 5],
        [7, 8, 10],
        [11],
    ]
    with pytest.raises(ValueError, match="at least 1"):
        list(batches(outcomes, 0))
