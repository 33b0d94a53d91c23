"""Attempt use cases, one part per kind of work, all sharing one `AttemptContext`.

`AttemptService` only assembles the parts; callers reach a use case through the part that
holds it (`attempts.answers.save_answer`, `attempts.lifecycle.pause`, ...), so a reader of the
answer path reads `answers.py` alone:

- `context`: the session maker, the clock, timers and bus, the ledger, and `write` (load, lock,
  decide, commit, then publish), `log`, `notify_proctors`;
- `creation`, `reads`, `answers`, `navigation`, `lifecycle`, `expiry`: the use cases;
- `ending`: how an attempt ends (the write path expires with it too); `views`: what is seen.

Parts are composed, not mixed in: each takes the context and nothing else.
"""

from __future__ import annotations

from delivery_service.services.attempts.answers import AttemptAnswers
from delivery_service.services.attempts.context import AttemptContext, HeldAttempt, locked_attempt
from delivery_service.services.attempts.creation import AttemptCreation
from delivery_service.services.attempts.expiry import AttemptExpiry
from delivery_service.services.attempts.lifecycle import AttemptLifecycle
from delivery_service.services.attempts.navigation import AttemptNavigation
from delivery_service.services.attempts.reads import AttemptReads

__all__ = ["AttemptContext", "AttemptService", "HeldAttempt", "locked_attempt"]


class AttemptService:
    """The attempt use cases, built once per worker around one shared context."""

    def __init__(self, context: AttemptContext) -> None:
        self.context = context
        self.creation = AttemptCreation(self.context)
        self.reads = AttemptReads(self.context)
        self.answers = AttemptAnswers(self.context)
        self.navigation = AttemptNavigation(self.context)
        self.lifecycle = AttemptLifecycle(self.context)
        self.expiry = AttemptExpiry(self.context)
