"""The pure account rules: which new passwords pass, who may create and look after whom,
and one-use set-password tokens."""

from __future__ import annotations

import uuid

import jwt
import pytest

from delivery_service.domain import accounts as rules
from delivery_service.domain.errors import Conflict, Forbidden
from delivery_service.domain.principal import Principal
from delivery_service.security.password_policy import MIN_LENGTH, weakness
from delivery_service.security.passwords import hash_password, needs_rehash
from delivery_service.security.tokens import TokenService

ADMIN = Principal(uuid.uuid4(), "ada", "admin")
TEACHER = Principal(uuid.uuid4(), "tom", "teacher")
STUDENT = Principal(uuid.uuid4(), "sam", "student")


@pytest.mark.parametrize(
    "password",
    ["short one", "password1234", "Password2026!", "dragondragon", "123456789012",
     "qwertyuiop!!", "!!!iloveyou!!!", "aaaaaaaaaaaaaaaa", "abababababab", "samsamsam-2026"],
)  # fmt: skip
def test_weak_passwords_are_refused_with_a_reason(password: str) -> None:
    assert weakness(password, username="sam") is not None


@pytest.mark.parametrize(
    "password", ["correct horse battery staple", "xk3!vR9#qLm2", "Tuesday is for tuba lessons"]
)
def test_long_uncommon_passwords_pass(password: str) -> None:
    assert len(password) >= MIN_LENGTH
    assert weakness(password, username="sam") is None


def test_who_may_create_which_role() -> None:
    for role in ("admin", "teacher", "student"):
        rules.require_may_create(ADMIN, role)  # type: ignore[arg-type]
    rules.require_may_create(TEACHER, "student")
    with pytest.raises(Forbidden):
        rules.require_may_create(TEACHER, "teacher")
    with pytest.raises(Forbidden):
        rules.require_may_create(STUDENT, "student")


def test_only_admins_look_after_existing_accounts() -> None:
    rules.require_admin(ADMIN, "reset passwords")
    for actor in (TEACHER, STUDENT):
        with pytest.raises(Forbidden):
            rules.require_admin(actor, "reset passwords")


def test_the_last_enabled_admin_cannot_be_lost() -> None:
    keep = {"target_role": "admin", "target_disabled": False}
    with pytest.raises(Conflict):
        rules.require_admin_kept(**keep, new_role="teacher", new_disabled=False, admins=1)
    with pytest.raises(Conflict):
        rules.require_admin_kept(**keep, new_role="admin", new_disabled=True, admins=1)
    rules.require_admin_kept(**keep, new_role="teacher", new_disabled=False, admins=2)
    rules.require_admin_kept(
        target_role="admin", target_disabled=True, new_role="teacher", new_disabled=True, admins=1
    )


def test_a_set_password_token_is_not_a_sign_in_and_a_sign_in_is_not_one() -> None:
    tokens = TokenService(secret="s" * 32, issuer="i", audience="a", ttl_seconds=60)
    user = uuid.uuid4()
    link = tokens.issue_set_password(user, 3, 3600)
    assert tokens.verify_set_password(link) == (user, 3)
    with pytest.raises(jwt.InvalidTokenError):
        tokens.verify(link)
    sign_in = tokens.issue(Principal(user, "sam", "student", 3))
    with pytest.raises(jwt.InvalidTokenError):
        tokens.verify_set_password(sign_in)


def test_a_password_change_requirement_travels_in_the_token() -> None:
    tokens = TokenService(secret="s" * 32, issuer="i", audience="a", ttl_seconds=60)
    limited = Principal(uuid.uuid4(), "sam", "student", 1, password_change_required=True)
    assert tokens.verify(tokens.issue(limited)).password_change_required is True
    plain = Principal(uuid.uuid4(), "sam", "student", 1)
    assert "pcr" not in plain.claims()
    assert tokens.verify(tokens.issue(plain)).password_change_required is False


def test_hashes_below_the_server_cost_are_marked_for_rehash() -> None:
    assert needs_rehash(hash_password("x", cost=2**4), cost=2**8)
    assert not needs_rehash(hash_password("x", cost=2**8), cost=2**8)
    assert needs_rehash("garbage", cost=2**8)
