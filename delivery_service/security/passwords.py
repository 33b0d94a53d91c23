"""Password hashing.

scrypt from the standard library is a slow, salted, memory-hard hash: no native dependency to
build.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


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


def needs_rehash(stored: str, *, cost: int) -> bool:
    """A hash made at a lower cost than the server's now (an import's fast hash, an older
    setting): replaced at the user's next sign-in, when the password is at hand."""
    try:
        scheme, n, *_ = stored.split("$")
        return scheme != "scrypt" or int(n) < cost
    except ValueError:
        return True
