"""Every setting, read from `EXAMSERVER_*` environment variables (or passed directly in tests).

Nothing connects at import time: `create_app(Settings(...))` builds the resources from an instance.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from delivery_service.domain.principal import Role

INSECURE_SECRET = "insecure-demo-secret-change-me-0123456789"
INSECURE_LEDGER_KEY = "insecure-demo-ledger-key-change-me-0123456789"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMSERVER_", extra="ignore")

    environment: Literal["production", "demo", "test"] = "production"
    database_url: str = "sqlite+aiosqlite:///./examserver.db"
    redis_url: str = Field(
        "memory://", description="redis://host:port/db, or memory:// for in-process fakeredis"
    )
    redis_prefix: str = Field("exam:v1", description="prefix of every Redis key and channel")
    redis_max_connections: int = Field(
        100, description="per worker; callers wait for a free one rather than fail"
    )
    # A backing service that stops answering must cost a request seconds, not forever: past
    # these, the request answers 503 (`database_unavailable`, `redis_unavailable`) and the
    # client retries, instead of a worker piling up requests behind a dead link.
    database_connect_timeout_seconds: float = Field(
        5.0, description="opening a database connection gives up after this"
    )
    database_command_timeout_seconds: float = Field(
        10.0, description="one database statement gives up after this (PostgreSQL)"
    )
    database_idle_transaction_timeout_seconds: float = Field(
        15.0,
        description="PostgreSQL ends a transaction left idle this long (a worker cut off "
        "mid-transaction would otherwise hold its rows locked for hours)",
    )
    database_pool_timeout_seconds: float = Field(
        10.0, description="waiting for a free pooled database connection gives up after this"
    )
    redis_connect_timeout_seconds: float = Field(
        3.0, description="opening a Redis connection gives up after this"
    )
    redis_socket_timeout_seconds: float = Field(
        5.0, description="one Redis command gives up after this (a stalled Redis)"
    )
    readiness_timeout_seconds: float = Field(
        2.0, description="/readyz reports a dependency down when it has not answered by then"
    )

    jwt_secret: str = INSECURE_SECRET
    jwt_issuer: str = "examserver"
    jwt_audience: str = "examserver"
    jwt_ttl_seconds: int = 8 * 3600
    ledger_key: str = Field(
        INSECURE_LEDGER_KEY,
        description="seals the integrity ledger (HMAC); keep it, or old chains cannot be verified",
    )
    password_hash_cost: int = Field(2**14, description="scrypt N; lower only in tests")
    # Bulk import of users (docs/decisions.md, "Bulk import"): passwords are hashed at this
    # lower scrypt cost, raised to password_hash_cost at each user's next sign-in.
    import_hash_cost: int = Field(2**11, description="scrypt N for imported passwords")
    import_hash_threads: int = Field(2, description="threads hashing an import's passwords")
    import_batch_rows: int = Field(1000, description="users written per import transaction")
    import_max_rows: int = Field(20_000, description="rows in one import file")
    import_max_bytes: int = Field(16 * 1024 * 1024, description="an import's body limit")
    login_max_failures: int = Field(
        10,
        description="sign-in attempts at one account from one address (or one signed-in "
        "browser) per window, before a pause",
    )
    login_max_per_address: int = Field(
        100, description="failed sign-in attempts from one address per window, any accounts"
    )
    login_window_seconds: int = 300
    set_password_link_hours: int = Field(
        72,
        ge=1,
        le=24 * 30,
        description="how long a one-time set-password link (a new account, a reset) works",
    )
    token_recheck_seconds: float = Field(
        30.0,
        description="how long a worker trusts its copy of a user's token state, and how often "
        "it re-checks the users of its open sockets (a revoked token's socket closes within "
        "about twice this)",
    )

    max_body_bytes: int = Field(
        1024 * 1024,
        description="largest request body accepted over REST (413 beyond); a QTI package "
        "upload has its own, larger limit",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed to open WebSockets besides the server's own host",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="proxies trusted for X-Forwarded-Proto/For (comma-separated, or *)",
    )
    ws_accept_rate_per_second: float = Field(
        200.0,
        description="new WebSockets a worker accepts per second (beyond: close 1013, retry)",
    )
    ws_accept_burst: int = 400
    ws_greeting_concurrency: int = Field(
        48,
        description="new WebSockets a worker greets at once (each reads the database); "
        "the rest wait for a slot",
    )
    gc_thresholds: tuple[int, int, int] = Field(
        (50_000, 20, 100),
        description="the worker's garbage-collector thresholds (gc.set_threshold); Python's "
        "(700, 10, 10) made full collections of a 2,000-socket heap stop the loop for 0.25-1 s "
        "every few seconds",
    )
    ws_greeting_wait_seconds: float = Field(
        30.0, description="how long a new WebSocket waits for a greeting slot (then: 1013, retry)"
    )
    ws_ticket_ttl_seconds: int = 30
    ws_auth_timeout_seconds: float = 5.0
    ws_max_message_bytes: int = 64 * 1024
    ws_rate_per_second: float = 20.0
    ws_rate_burst: int = 40
    ws_max_violations: int = 20
    ws_heartbeat_timeout_seconds: float = 45.0
    ws_send_queue_size: int = 256

    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per line, with request/attempt/session ids"
    )
    drain_seconds: float = Field(
        2.0, description="after SIGTERM, how long /readyz answers 503 before shutting down"
    )
    grace_ms: int = Field(2000, description="network grace after a deadline, milliseconds")
    session_open_lead_minutes: int = Field(
        30,
        ge=0,
        description="how long before a session's scheduled time its waiting room may open",
    )
    access_password_max_failures: int = Field(
        10,
        ge=1,
        description="wrong access passwords one student may try at one test per window "
        "(LOGIN_WINDOW_SECONDS) before a pause",
    )
    sweep_interval_seconds: float = 0.5
    expiry_lease_seconds: float = 30.0
    reconcile_interval_seconds: float = 30.0
    clock_sync_interval_seconds: float = 60.0
    stream_maxlen: int = 1000
    stream_ttl_seconds: int = 24 * 3600

    # OpenID Connect sign-in (services/oidc.py): off unless the issuer is set.
    oidc_issuer: str | None = Field(
        None,
        description="the provider's issuer URL; its discovery document is read from "
        "ISSUER/.well-known/openid-configuration. Unset: OpenID Connect sign-in is off",
    )
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = Field(
        SecretStr(""), description="empty: a public client (PKCE only, no client secret)"
    )
    oidc_scopes: str = "openid profile email"
    oidc_redirect_url: str | None = Field(
        None,
        description="the callback URL registered at the provider "
        "(https://exam.example.org/api/v1/auth/oidc/callback); unset: derived from the request",
    )
    oidc_username_claim: str = Field(
        "preferred_username",
        description="the ID token claim matched against users.username; pick one the provider "
        "does not let users change",
    )
    oidc_role_claim: str | None = Field(
        None, description="the claim holding the user's roles or groups (a string or a list)"
    )
    oidc_role_map: dict[str, Role] = Field(
        default_factory=dict,
        description="role-claim values to roles, as JSON: "
        '{"staff": "teacher", "pupils": "student"}',
    )
    oidc_default_role: Role | None = Field(
        None, description="the role when the role claim maps to none (or there is no role claim)"
    )
    oidc_create_users: bool = Field(
        False, description="create a user signing in for the first time (off: refused)"
    )
    oidc_display_name_claim: str = "name"
    oidc_label: str = Field("single sign-on", description='the button reads "Sign in with LABEL"')
    oidc_flow_seconds: int = Field(
        600, description="how long a started sign-in may take at the provider"
    )
    oidc_timeout_seconds: float = Field(
        10.0, description="one request to the provider gives up after this"
    )

    @property
    def grace(self) -> timedelta:
        return timedelta(milliseconds=self.grace_ms)

    @property
    def session_open_lead(self) -> timedelta:
        return timedelta(minutes=self.session_open_lead_minutes)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.environment == "production" and self.jwt_secret == INSECURE_SECRET:
            raise ValueError(
                "EXAMSERVER_JWT_SECRET must be set to a secret of your own in production "
                "(the built-in value is public and only for the demo)"
            )
        if len(self.jwt_secret) < 32:
            raise ValueError("EXAMSERVER_JWT_SECRET must be at least 32 characters")
        if self.environment == "production" and self.ledger_key == INSECURE_LEDGER_KEY:
            raise ValueError(
                "EXAMSERVER_LEDGER_KEY must be set to a secret of your own in production "
                "(anyone holding the built-in key could re-seal a forged ledger)"
            )
        if len(self.ledger_key) < 32:
            raise ValueError("EXAMSERVER_LEDGER_KEY must be at least 32 characters")
        return self

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @model_validator(mode="after")
    def _check_oidc(self) -> Settings:
        if not self.oidc_issuer:
            return self
        issuer = urlsplit(self.oidc_issuer)
        if issuer.scheme not in ("https", "http") or not issuer.netloc:
            raise ValueError("EXAMSERVER_OIDC_ISSUER must be an absolute URL")
        if self.environment == "production" and issuer.scheme != "https":
            raise ValueError("EXAMSERVER_OIDC_ISSUER must be https in production")
        if not self.oidc_client_id:
            raise ValueError("EXAMSERVER_OIDC_CLIENT_ID is required with EXAMSERVER_OIDC_ISSUER")
        if "openid" not in self.oidc_scopes.split():
            raise ValueError("EXAMSERVER_OIDC_SCOPES must include openid")
        if self.oidc_role_map and not self.oidc_role_claim:
            raise ValueError("EXAMSERVER_OIDC_ROLE_MAP needs EXAMSERVER_OIDC_ROLE_CLAIM")
        if self.oidc_role_claim and not self.oidc_role_map and not self.oidc_default_role:
            raise ValueError(
                "EXAMSERVER_OIDC_ROLE_CLAIM needs EXAMSERVER_OIDC_ROLE_MAP (or a default role)"
            )
        if self.oidc_create_users and not (self.oidc_role_map or self.oidc_default_role):
            raise ValueError(
                "EXAMSERVER_OIDC_CREATE_USERS needs a role for new users: "
                "EXAMSERVER_OIDC_ROLE_CLAIM with EXAMSERVER_OIDC_ROLE_MAP, "
                "or EXAMSERVER_OIDC_DEFAULT_ROLE"
            )
        if self.oidc_redirect_url:
            redirect = urlsplit(self.oidc_redirect_url)
            if redirect.scheme not in ("https", "http") or not redirect.netloc:
                raise ValueError("EXAMSERVER_OIDC_REDIRECT_URL must be an absolute URL")
        return self
