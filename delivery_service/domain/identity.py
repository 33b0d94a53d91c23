"""Who an identity provider's verified claims say a user is: the rules of OpenID Connect
sign-in that need no I/O (services/oidc.py does the I/O).

Pure: claims in, a username, a display name and a role out, or a refusal with a stable code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from delivery_service.domain.accounts import USERNAME
from delivery_service.domain.errors import DomainError
from delivery_service.domain.principal import Role

#: the most privileged role wins when a user's groups map to several
ROLE_RANK: dict[Role, int] = {"student": 0, "teacher": 1, "admin": 2}
DISPLAY_NAME_MAX = 200


class SignInRefused(DomainError):
    """An external sign-in that cannot go on; `code` says why (stable, shown to the user)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        self.code = code
        super().__init__(message, **details)


@dataclass(frozen=True)
class ClaimRules:
    """How claims name a user and a role (the EXAMSERVER_OIDC_* settings)."""

    username_claim: str = "preferred_username"
    display_name_claim: str = "name"
    role_claim: str | None = None
    role_map: Mapping[str, Role] = field(default_factory=dict)
    default_role: Role | None = None

    def username(self, claims: Mapping[str, Any]) -> str:
        value = claims.get(self.username_claim)
        # The users API's rule (schemas/users.py), so an account OpenID creates is one staff
        # can name in the console, a CSV or a command line.
        if not isinstance(value, str) or not USERNAME.fullmatch(value):
            raise SignInRefused(
                "oidc_claim_missing",
                f"the provider did not send a usable {self.username_claim!r} claim",
                claim=self.username_claim,
            )
        # An address the provider has not verified could be anyone's: never match by it.
        if self.username_claim == "email" and claims.get("email_verified") is not True:
            raise SignInRefused(
                "oidc_claim_missing",
                "the provider has not verified this email address",
                claim="email_verified",
            )
        return value

    def display_name(self, claims: Mapping[str, Any], username: str) -> str:
        value = claims.get(self.display_name_claim)
        if isinstance(value, str) and value.strip():
            return value.strip()[:DISPLAY_NAME_MAX]
        return username

    def claimed_role(self, claims: Mapping[str, Any]) -> Role | None:
        """The role the claims map to (the most privileged of several), else the default
        role; None when neither decides one."""
        if self.role_claim is not None:
            value = claims.get(self.role_claim)
            values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            mapped = {self.role_map[v] for v in values if isinstance(v, str) and v in self.role_map}
            if mapped:
                return max(mapped, key=ROLE_RANK.__getitem__)
        return self.default_role

    def role_of_existing(self, claims: Mapping[str, Any], stored: Role) -> Role:
        """An existing user keeps the role this server gave them. With a role claim
        configured, the claims must agree with it: a provider account renamed to an admin's
        username does not carry the admin's groups, so it is refused rather than let in."""
        if self.role_claim is None:
            return stored
        claimed = self.claimed_role(claims)
        if claimed is None:
            raise _role_unknown(self.role_claim)
        if claimed != stored:
            raise SignInRefused(
                "oidc_role_mismatch",
                f"the provider says {claimed}, but this account is a {stored} here; "
                "ask an administrator",
                claimed=claimed,
                stored=stored,
            )
        return stored

    def role_of_new(self, claims: Mapping[str, Any]) -> Role:
        claimed = self.claimed_role(claims)
        if claimed is None:
            raise _role_unknown(self.role_claim)
        return claimed


def _role_unknown(role_claim: str | None) -> SignInRefused:
    return SignInRefused(
        "oidc_role_unknown",
        "your role could not be decided from the provider's "
        + (f"{role_claim!r} claim" if role_claim else "claims")
        + "; ask an administrator",
    )
