"""OpenID Connect sign-in's pure parts: settings validation, the claim rules
(domain/identity.py) and the `next` paths the callback may return to."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from delivery_service.api.routes.oidc import local_path
from delivery_service.domain.identity import ClaimRules, SignInRefused
from delivery_service.settings import Settings

ISSUER = {"environment": "test", "oidc_issuer": "https://id.example.org", "oidc_client_id": "x"}


def test_oidc_is_off_without_an_issuer() -> None:
    assert Settings(environment="test").oidc_enabled is False
    assert Settings(**ISSUER).oidc_enabled is True  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"oidc_client_id": ""}, "CLIENT_ID is required"),
        ({"oidc_issuer": "id.example.org"}, "absolute URL"),
        ({"oidc_scopes": "profile email"}, "must include openid"),
        ({"oidc_role_map": {"staff": "teacher"}}, "needs EXAMSERVER_OIDC_ROLE_CLAIM"),
        ({"oidc_role_claim": "groups"}, "needs EXAMSERVER_OIDC_ROLE_MAP"),
        ({"oidc_create_users": True}, "needs a role for new users"),
        ({"oidc_role_map": {"staff": "janitor"}, "oidc_role_claim": "groups"}, "oidc_role_map"),
        ({"oidc_redirect_url": "/api/v1/auth/oidc/callback"}, "REDIRECT_URL"),
    ],
)
def test_inconsistent_oidc_settings_are_refused(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**(ISSUER | values))  # type: ignore[arg-type]


def test_production_needs_an_https_issuer() -> None:
    with pytest.raises(ValidationError, match="https in production"):
        Settings(
            environment="production",
            jwt_secret="s" * 40,
            ledger_key="k" * 40,
            oidc_issuer="http://id.example.org",
            oidc_client_id="x",
        )


def test_creating_users_with_a_default_role_is_enough() -> None:
    settings = Settings(**ISSUER, oidc_create_users=True, oidc_default_role="student")  # type: ignore[arg-type]
    assert settings.oidc_default_role == "student"


RULES = ClaimRules(
    role_claim="groups",
    role_map={"pupils": "student", "staff": "teacher", "it": "admin"},
)


def refusal(action: Any) -> str:
    with pytest.raises(SignInRefused) as refused:
        action()
    return refused.value.code


def test_the_username_comes_from_the_configured_claim() -> None:
    assert RULES.username({"preferred_username": "ada"}) == "ada"
    assert refusal(lambda: RULES.username({"sub": "1"})) == "oidc_claim_missing"
    assert refusal(lambda: RULES.username({"preferred_username": "x" * 65})) == (
        "oidc_claim_missing"
    )
    # A name staff could not type in the console, a CSV or a command line is no username.
    for unusable in ("Jane Doe", "tab\there", "semi;colon", ""):
        assert refusal(lambda u=unusable: RULES.username({"preferred_username": u})) == (
            "oidc_claim_missing"
        )
    assert RULES.username({"preferred_username": "jane.doe+exams@school.example"})


def test_an_unverified_email_never_matches_a_user() -> None:
    rules = ClaimRules(username_claim="email")
    assert rules.username({"email": "a@school.example", "email_verified": True}) == (
        "a@school.example"
    )
    assert refusal(lambda: rules.username({"email": "a@school.example"})) == "oidc_claim_missing"


def test_the_most_privileged_mapped_role_wins_and_unmapped_values_are_ignored() -> None:
    assert RULES.claimed_role({"groups": ["pupils", "staff", "chess club"]}) == "teacher"
    assert RULES.claimed_role({"groups": "it"}) == "admin"
    assert RULES.claimed_role({"groups": ["chess club"]}) is None
    assert RULES.claimed_role({"groups": 7}) is None


def test_a_new_users_role_falls_back_to_the_default_else_is_refused() -> None:
    assert RULES.role_of_new({"groups": ["staff"]}) == "teacher"
    assert refusal(lambda: RULES.role_of_new({})) == "oidc_role_unknown"
    with_default = ClaimRules(
        role_claim="groups", role_map={"staff": "teacher"}, default_role="student"
    )
    assert with_default.role_of_new({"groups": ["visitors"]}) == "student"


def test_an_existing_user_keeps_their_role_which_the_claim_must_confirm() -> None:
    assert ClaimRules().role_of_existing({}, "admin") == "admin"  # no role claim: ours decides
    assert RULES.role_of_existing({"groups": ["it"]}, "admin") == "admin"
    assert refusal(lambda: RULES.role_of_existing({"groups": ["pupils"]}, "admin")) == (
        "oidc_role_mismatch"
    )
    assert refusal(lambda: RULES.role_of_existing({}, "student")) == "oidc_role_unknown"


def test_the_display_name_falls_back_to_the_username() -> None:
    assert RULES.display_name({"name": "  Ada L. "}, "ada") == "Ada L."
    assert RULES.display_name({}, "ada") == "ada"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/", "/"),
        ("/console/", "/console/"),
        ("/?session=s1", "/?session=s1"),
        ("/console/?session=s1#grid", "/console/?session=s1"),
        ("//evil.example/", None),
        ("https://evil.example/", None),
        ("/\\evil.example", None),
        ("/\t/evil.example", None),
        ("/\n/evil.example", None),
        ("evil.example/", None),
        ("javascript:alert(1)", None),
        ("", None),
    ],
)
def test_next_is_a_path_on_this_server_or_nothing(given: str, kept: str | None) -> None:
    assert local_path(given) == kept
