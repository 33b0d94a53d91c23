"""JWTs: HS256 pinned, and exp, iat, iss, aud and sub required, so a token missing any is
rejected."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from delivery_service.domain.principal import ROLES, Principal

ALGORITHM = "HS256"


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """The principal a verified token's claims name; InvalidTokenError if they name none."""
    role = claims.get("role")
    if role not in ROLES:
        raise jwt.InvalidTokenError("unknown role")
    version = claims.get("tv", 0)  # tokens issued before versions existed: version 0
    if not isinstance(version, int) or isinstance(version, bool):
        raise jwt.InvalidTokenError("the token version is not an integer")
    return Principal(
        uuid.UUID(str(claims["sub"])),
        str(claims.get("username", "")),
        role,
        version,
        password_change_required=claims.get("pcr") is True,
    )


SET_PASSWORD = "set_password"


class TokenService:
    def __init__(self, *, secret: str, issuer: str, audience: str, ttl_seconds: int) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds

    def issue(self, principal: Principal, *, now: datetime | None = None) -> str:
        issued = now or datetime.now(UTC)
        claims = principal.claims() | {
            "iss": self._issuer,
            "aud": self._audience,
            "iat": issued,
            "exp": issued + timedelta(seconds=self.ttl_seconds),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        """Raise jwt.InvalidTokenError unless every check passes. A token made for one use
        (a set-password link) is not a sign-in."""
        claims = self._decode(token)
        if "use" in claims:
            raise jwt.InvalidTokenError("this token is not a sign-in")
        try:
            return principal_from_claims(claims)
        except (KeyError, ValueError) as exc:
            raise jwt.InvalidTokenError(str(exc)) from exc

    def issue_set_password(
        self,
        user_id: uuid.UUID,
        token_version: int,
        ttl_seconds: int,
        *,
        now: datetime | None = None,
    ) -> str:
        """A link's token that lets its holder choose the user's password once: it names the
        user's token version, which choosing a password raises, so it works only once (and a
        later reset or revocation ends it too)."""
        issued = now or datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "tv": token_version,
            "use": SET_PASSWORD,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": issued,
            "exp": issued + timedelta(seconds=ttl_seconds),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_set_password(self, token: str) -> tuple[uuid.UUID, int]:
        """The (user id, token version) a set-password token names; InvalidTokenError if it
        is not one, or is expired or forged."""
        claims = self._decode(token)
        version = claims.get("tv")
        if claims.get("use") != SET_PASSWORD or not isinstance(version, int):
            raise jwt.InvalidTokenError("not a set-password token")
        try:
            return uuid.UUID(str(claims["sub"])), version
        except ValueError as exc:
            raise jwt.InvalidTokenError(str(exc)) from exc

    def _decode(self, token: str) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            self._secret,
            algorithms=[ALGORITHM],
            audience=self._audience,
            issuer=self._issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
        return claims
