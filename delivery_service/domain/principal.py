"""Who is calling: a user id, a role and the token version they were proven with.

Pure: the token layer (`security/tokens.py`) proves it; services and the access rules take it
as given. Its claims are the JWT payload's subject part.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["admin", "teacher", "student"]
ROLES: tuple[Role, ...] = ("admin", "teacher", "student")


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a token or ticket."""

    user_id: uuid.UUID
    username: str
    role: Role
    #: the user's token version when the token was issued (see UserStates)
    token_version: int = 0
    #: signed in with a password they must change first (an admin reset it, an import made
    #: it): such a token may only read who it is and choose the new password
    password_change_required: bool = False

    @property
    def is_staff(self) -> bool:
        return self.role in ("admin", "teacher")

    def claims(self) -> dict[str, Any]:
        return {
            "sub": str(self.user_id),
            "username": self.username,
            "role": self.role,
            "tv": self.token_version,
        } | ({"pcr": True} if self.password_change_required else {})
