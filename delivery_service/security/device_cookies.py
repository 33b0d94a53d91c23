"""The signed cookie that tells the login throttle a browser signed in before."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


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
