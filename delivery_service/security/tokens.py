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
    return Principal(uuid.UUID(str(claims["sub"])), str(claims.get("username", "")), role, version)


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
        """Raise jwt.InvalidTokenError unless every check passes."""
        claims = jwt.decode(
            token,
            self._secret,
            algorithms=[ALGORITHM],
            audience=self._audience,
            issuer=self._issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
        try:
            return principal_from_claims(claims)
        except (KeyError, ValueError) as exc:
            raise jwt.InvalidTokenError(str(exc)) from exc
