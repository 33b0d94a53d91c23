"""Password hashing and JWTs.

scrypt from the standard library is a slow, salted, memory-hard hash: no native dependency to
build. JWTs pin HS256 and require exp, iat, iss, aud and sub, so a token missing any is rejected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

Role = Literal["admin", "teacher", "student"]
ROLES: tuple[Role, ...] = ("admin", "teacher", "student")
ALGORITHM = "HS256"


def hash_password(password: str, *, cost: int = 2**14) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=cost, r=8, p=1, dklen=32)
    encode = base64.b64encode
    return f"scrypt${cost}$8$1${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(expected),
    )
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a token or ticket."""

    user_id: uuid.UUID
    username: str
    role: Role
    #: the user's token version when the token was issued (see UserStates)
    token_version: int = 0

    @property
    def is_staff(self) -> bool:
        return self.role in ("admin", "teacher")

    def claims(self) -> dict[str, Any]:
        return {
            "sub": str(self.user_id),
            "username": self.username,
            "role": self.role,
            "tv": self.token_version,
        }

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        role = claims.get("role")
        if role not in ROLES:
            raise jwt.InvalidTokenError("unknown role")
        version = claims.get("tv", 0)  # tokens issued before versions existed: version 0
        if not isinstance(version, int) or isinstance(version, bool):
            raise jwt.InvalidTokenError("the token version is not an integer")
        return cls(uuid.UUID(str(claims["sub"])), str(claims.get("username", "")), role, version)


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
            return Principal.from_claims(claims)
        except (KeyError, ValueError) as exc:
            raise jwt.InvalidTokenError(str(exc)) from exc


class DeviceCookies:
    """Proof that a browser signed in as a user before (`examserver_device`): the username, a
    random id and an HMAC of both under a key derived from the JWT secret. The login throttle
    counts such a browser's attempts apart from its address's (live/throttle.py), so a guesser
    sharing a school's address cannot use up a candidate's own tries. It proves nothing else
    and grants nothing: the password is still checked."""

    NAME = "examserver_device"

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"examserver device cookie", hashlib.sha256).digest()

    def issue(self, username: str) -> str:
        name = base64.urlsafe_b64encode(username.lower().encode()).decode().rstrip("=")
        device = secrets.token_urlsafe(12)
        return f"{name}.{device}.{self._sign(name, device)}"

    def device_of(self, cookie: str | None, username: str) -> str | None:
        """The cookie's device id if it is ours and was issued for `username`."""
        if not cookie or len(cookie) > 512 or cookie.count(".") != 2:
            return None
        name, device, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(name, device)):
            return None
        padded = name + "=" * (-len(name) % 4)
        try:
            issued_for = base64.urlsafe_b64decode(padded).decode()
        except ValueError:
            return None
        return device if issued_for == username.lower() else None

    def _sign(self, name: str, device: str) -> str:
        return hmac.new(self._key, f"{name}.{device}".encode(), hashlib.sha256).hexdigest()[:32]
