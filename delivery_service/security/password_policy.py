"""Which new passwords are accepted: at least 12 characters, and not a common password or a
common password dressed up (`Password2026!`, `dragondragon`), nor the username.

Length is what makes a password hard to guess offline; the deny list is what stops the
guesses an online attacker tries first. Composition rules (one digit, one symbol) are left
out on purpose: they push people to `Password1!` and are not in NIST SP 800-63B.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

MIN_LENGTH = 12
MAX_LENGTH = 1024

_DRESSING = re.compile(r"^[\W\d_]*(.*?)[\W\d_]*$", re.DOTALL)


@cache
def common_passwords() -> frozenset[str]:
    text = (Path(__file__).parent / "common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(w for w in text.splitlines() if w and not w.startswith("#"))


def weakness(password: str, *, username: str | None = None) -> str | None:
    """Why this password is refused, or None when it is accepted."""
    if len(password) < MIN_LENGTH:
        return f"use at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"use at most {MAX_LENGTH} characters"
    lowered = password.lower()
    if len(set(lowered)) < 4:
        return "use more than a few different characters"
    common = common_passwords()
    core = _DRESSING.match(lowered)
    candidates = {lowered, core.group(1) if core else lowered}
    for word in list(candidates):
        # `dragondragon`, `abcabcabcabc`: a short word repeated.
        for size in range(1, len(word) // 2 + 1):
            if len(word) % size == 0 and word[:size] * (len(word) // size) == word:
                candidates.add(word[:size])
                break
    if any(c in common or c.isdigit() or not c for c in candidates):
        return "this is a common password (or one with digits or symbols added); choose another"
    if username and len(username) >= 3 and username.lower() in lowered:
        return "do not use your username in your password"
    return None
