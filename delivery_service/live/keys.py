"""Every Redis key and channel name, in one place, all under one prefix.

Keys of one channel or one attempt share a hash tag (`{...}`) so the multi-key Lua scripts also run
on Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str

    @property
    def epoch(self) -> str:
        """Present while Redis still holds our data; its absence means rebuild from the database."""
        return f"{self.prefix}:epoch"

    @property
    def deadlines(self) -> str:
        return f"{self.prefix}:deadlines"

    @property
    def reconcile(self) -> str:
        """Held by the worker whose turn it is to rebuild timers from the database."""
        return f"{self.prefix}:reconcile"

    def timer(self, attempt_id: str) -> str:
        return f"{self.prefix}:timer:{{a:{attempt_id}}}"

    def owner(self, scope: str, user_id: str) -> str:
        """`scope` is an attempt id, or `s:{session id}` for a session socket."""
        return f"{self.prefix}:owner:{{a:{scope}}}:{user_id}"

    def presence(self, session_id: str) -> str:
        return f"{self.prefix}:presence:{{s:{session_id}}}"

    def login_source(self, source: str) -> str:
        """Login attempts from one client address (its buckets share a hash tag: one script
        counts them together)."""
        return f"{self.prefix}:login:{{src:{source}}}"

    def login_account(self, username: str, source: str) -> str:
        """Login attempts at one username from one client address."""
        return f"{self.login_source(source)}:account:{username.lower()}"

    def login_device(self, device: str) -> str:
        """Login attempts from one browser that signed in before (its device cookie's id)."""
        return f"{self.prefix}:login:device:{device}"

    def access_password(self, test_id: str, user_id: str) -> str:
        """Access-password guesses of one student at one test (live/guesses.py)."""
        return f"{self.prefix}:test:{test_id}:password:{user_id}"

    def token_version(self, user_id: str) -> str:
        """A cached copy of the user's token version ("off": disabled or gone)."""
        return f"{self.prefix}:user:{user_id}:tv"

    def ticket(self, ticket: str) -> str:
        return f"{self.prefix}:ticket:{ticket}"

    def oidc_flow(self, state: str) -> str:
        """A started OpenID Connect sign-in (nonce, PKCE verifier, where to return), by state."""
        return f"{self.prefix}:oidc:{state}"

    def pubsub(self, channel: str) -> str:
        return f"{self.prefix}:ch:{channel}"

    def channel_keys(self, channel: str) -> tuple[str, str, str]:
        """(offset, epoch, stream) of one channel."""
        tag = f"{self.prefix}:{{ch:{channel}}}"
        return f"{tag}:offset", f"{tag}:epoch", f"{tag}:stream"


def attempt_channel(attempt_id: str) -> str:
    return f"attempt:{attempt_id}"


def session_channel(session_id: str) -> str:
    """Status changes and notices for everyone in a session."""
    return f"session:{session_id}"


def proctor_channel(session_id: str) -> str:
    """The monitoring feed: only workers with a proctor's socket subscribe, so student-only
    workers never carry its traffic."""
    return f"proctor:{session_id}"


def participant_channel(session_id: str, user_id: str) -> str:
    """Messages for one student of a session (a notice, their accommodation)."""
    return f"participant:{session_id}:{user_id}"


WORKERS_CHANNEL = "workers"

SESSION_MEMBER = "session:"
"""Prefixes a group session's id in the deadlines set, beside attempt ids: the sweeper completes
the session when its member falls due."""
