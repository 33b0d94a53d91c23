"""OpenID Connect sign-in: start a flow at the provider, finish it, and sign the user in here.

Authlib does the protocol: discovery, the authorization URL with state, nonce and a PKCE
challenge, the code exchange, and the ID token's checks (signature against the provider's JWKS,
iss, aud, exp, nonce). What a flow must remember between the two halves (nonce, PKCE verifier,
redirect URI, where to return) is kept in Redis under its state for a few minutes, so any
worker finishes a flow another started, and is taken once. A cookie set when the flow starts
binds it to the browser that started it: a callback URL lured into another browser (login
CSRF) finds no binding and is refused.

The user is then matched by a configured claim against `users.username` (domain/identity.py)
and signed in with this server's own token, as a password sign-in is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
from authlib.integrations.starlette_client import OAuth, OAuthError
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.identity import ClaimRules, SignInRefused
from delivery_service.domain.principal import Principal, Role
from delivery_service.live.keys import Keys
from delivery_service.security.tokens import TokenService
from delivery_service.settings import Settings
from delivery_service.storage.database import db_now
from delivery_service.storage.models import User

log = logging.getLogger(__name__)

#: stored for users created by an external sign-in: no password verifies against it
NO_PASSWORD = "!oidc"
#: clock difference tolerated between the provider and us on exp/iat
CLOCK_SKEW_SECONDS = 60
#: the ID token's signature algorithms we accept whatever the discovery document says:
#: asymmetric only, so a provider's public key can never be used as an HMAC secret
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
STATE_MAX = 128
BINDING = re.compile(r"[A-Za-z0-9_-]{43}")  # what secrets.token_urlsafe(32) makes


class OidcRefused(SignInRefused):
    """A refused external sign-in, with the page to send the browser back to."""

    def __init__(self, code: str, message: str, *, next_path: str = "/") -> None:
        super().__init__(code, message)
        self.next_path = next_path


@dataclass(frozen=True)
class Started:
    url: str  #: the provider's authorization URL
    binding: str  #: the flow cookie's value


@dataclass(frozen=True)
class SignedIn:
    token: str
    principal: Principal
    next_path: str
    created: bool
    page: str = ""  # the page's own value from `start`, for it to check


class OidcSignIn:
    """Sign-in through one OpenID provider, built from the EXAMSERVER_OIDC_* settings."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        redis: Redis,
        keys: Keys,
        tokens: TokenService,
    ) -> None:
        if not settings.oidc_issuer:
            raise ValueError("OpenID Connect sign-in needs EXAMSERVER_OIDC_ISSUER")
        self._db = db
        self._redis = redis
        self._keys = keys
        self._tokens = tokens
        self.issuer = settings.oidc_issuer
        self.label = settings.oidc_label
        self.flow_seconds = settings.oidc_flow_seconds
        self._client_id = settings.oidc_client_id
        self._create_users = settings.oidc_create_users
        self.rules = ClaimRules(
            username_claim=settings.oidc_username_claim,
            display_name_claim=settings.oidc_display_name_claim,
            role_claim=settings.oidc_role_claim,
            role_map=dict(settings.oidc_role_map),
            default_role=settings.oidc_default_role,
        )
        secret = settings.oidc_client_secret.get_secret_value()
        oauth = OAuth()
        oauth.register(
            "oidc",
            client_id=settings.oidc_client_id,
            client_secret=secret or None,
            server_metadata_url=self.issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.oidc_scopes,
                "code_challenge_method": "S256",
                "timeout": settings.oidc_timeout_seconds,
                # A public client proves itself with PKCE alone.
                **({} if secret else {"token_endpoint_auth_method": "none"}),
            },
        )
        self._client = oauth.create_client("oidc")

    async def start(
        self, *, next_path: str, redirect_uri: str, binding: str | None = None, page: str = ""
    ) -> Started:
        """The provider's authorization URL for a new flow, remembered under its state and
        bound to the browser's `binding` (kept if it has one, so flows started in two tabs
        both finish; else a new one)."""
        try:
            await self._metadata()
            authorization = await self._client.create_authorization_url(redirect_uri)
        except (httpx2.HTTPError, ValueError, KeyError, RuntimeError) as exc:
            log.warning("OpenID provider %s unavailable: %s", self.issuer, exc)
            raise OidcRefused(
                "oidc_unavailable",
                "the sign-in provider cannot be reached; try again shortly",
                next_path=next_path,
            ) from exc
        if binding is None or not BINDING.fullmatch(binding):
            binding = secrets.token_urlsafe(32)
        flow = {
            "nonce": authorization["nonce"],
            "code_verifier": authorization["code_verifier"],
            "redirect_uri": redirect_uri,
            "next": next_path,
            "binding": _digest(binding),
            # Handed back beside the token: the page takes a token only with the value it
            # chose, so nobody can plant their own sign-in with a link to `/#oidc_token=…`.
            "page": page,
        }
        key = self._keys.oidc_flow(authorization["state"])
        await self._redis.set(key, json.dumps(flow), ex=self.flow_seconds)
        return Started(str(authorization["url"]), binding)

    async def finish(
        self,
        *,
        state: str,
        code: str,
        error: str = "",
        issuer: str = "",
        binding: str | None,
    ) -> SignedIn:
        """The provider's answer (`code` or `error`) for the flow `state` started in the
        browser holding `binding`: this server's token for the user, or OidcRefused."""
        flow = await self._take(state, binding)
        next_path = str(flow["next"])
        if error:
            raise OidcRefused(
                "oidc_provider_error",
                f"the sign-in provider did not sign you in ({error[:100]})",
                next_path=next_path,
            )
        if not code:
            raise OidcRefused(
                "oidc_provider_error",
                "the sign-in provider's answer is incomplete; start again",
                next_path=next_path,
            )
        try:
            claims = await self._verified_claims(code, issuer, flow)
            principal, created = await self._principal(claims)
        except SignInRefused as exc:
            raise OidcRefused(exc.code, exc.message, next_path=next_path) from exc
        page = str(flow.get("page", ""))
        return SignedIn(self._tokens.issue(principal), principal, next_path, created, page)

    async def _take(self, state: str, binding: str | None) -> dict[str, Any]:
        """The flow started under `state`, once, and only for the browser that started it."""
        expired = OidcRefused(
            "oidc_state_invalid", "this sign-in has expired or was already used; start again"
        )
        if not state or len(state) > STATE_MAX or not state.isascii():
            raise expired
        key = self._keys.oidc_flow(state)
        raw = await self._redis.get(key)
        if raw is None:
            raise expired
        flow: dict[str, Any] = json.loads(raw)
        if binding is None or not hmac.compare_digest(str(flow["binding"]), _digest(binding)):
            raise OidcRefused(
                "oidc_state_invalid",
                "this sign-in was started in another browser; start again here",
                next_path=str(flow["next"]),
            )
        if not await self._redis.delete(key):  # another request took it first
            raise expired
        return flow

    async def _verified_claims(
        self, code: str, issuer: str, flow: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            metadata = await self._metadata()
        except (httpx2.HTTPError, ValueError, KeyError, RuntimeError) as exc:
            log.warning("OpenID provider %s unavailable: %s", self.issuer, exc)
            raise SignInRefused(
                "oidc_unavailable", "the sign-in provider cannot be reached; try again shortly"
            ) from exc
        # RFC 9207: a provider that names itself in the answer must be ours (mix-up defence).
        if issuer and issuer != metadata["issuer"]:
            raise SignInRefused(
                "oidc_provider_error", "the answer came from another sign-in provider"
            )
        try:
            token = await self._client.fetch_access_token(
                redirect_uri=flow["redirect_uri"], code=code, code_verifier=flow["code_verifier"]
            )
        except OAuthError as exc:
            raise SignInRefused(
                "oidc_token_invalid", f"the sign-in provider refused the code ({exc.error})"
            ) from exc
        except (httpx2.HTTPError, ValueError, KeyError, RuntimeError) as exc:
            log.warning("OpenID provider %s failed the code exchange: %s", self.issuer, exc)
            raise SignInRefused(
                "oidc_unavailable", "the sign-in provider cannot be reached; try again shortly"
            ) from exc
        if "id_token" not in token:
            raise SignInRefused("oidc_token_invalid", "the sign-in provider sent no ID token")
        options = {
            "iss": {"essential": True, "value": metadata["issuer"]},
            "aud": {"essential": True, "value": self._client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
        }
        try:
            claims = await self._client.parse_id_token(
                token, nonce=flow["nonce"], claims_options=options, leeway=CLOCK_SKEW_SECONDS
            )
        except ExpiredTokenError as exc:
            raise SignInRefused("oidc_token_invalid", "the ID token has expired") from exc
        except ClaimError as exc:
            raise SignInRefused(
                "oidc_token_invalid", f"the ID token's {exc.claim!r} claim is not valid"
            ) from exc
        except JoseError as exc:
            raise SignInRefused(
                "oidc_token_invalid", f"the ID token's signature is not valid ({exc.error})"
            ) from exc
        except (httpx2.HTTPError, ValueError) as exc:
            log.warning("OpenID provider %s: cannot read its keys: %s", self.issuer, exc)
            raise SignInRefused(
                "oidc_unavailable", "the sign-in provider cannot be reached; try again shortly"
            ) from exc
        return dict(claims)

    async def _principal(self, claims: Mapping[str, Any]) -> tuple[Principal, bool]:
        """The user bound to the provider account (issuer and `sub`); at the first sign-in,
        the user the matching claim names, bound from then on, or created if allowed.
        Refused when that user is bound to another provider account, disabled, or when their
        role cannot be decided."""
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise SignInRefused("oidc_token_invalid", "the provider's token names no subject")
        subject = f"{self.issuer} {claims['sub']}"
        username = self.rules.username(claims)
        created = False
        user = await self._bound(subject)
        if user is None:
            user = await self._user(username)
            if user is not None:
                await self._bind(user, subject)
        if user is None:
            if not self._create_users:
                raise SignInRefused(
                    "oidc_user_unknown",
                    f"there is no account for {username!r} here; ask an administrator",
                )
            role = self.rules.role_of_new(claims)
            user, created = await self._create(username, claims, role, subject)
        else:
            self.rules.role_of_existing(claims, user.role)  # type: ignore[arg-type]
        if user.disabled:
            raise SignInRefused(
                "account_disabled", "this account is disabled; ask an administrator"
            )
        role_now: Role = user.role  # type: ignore[assignment]
        return Principal(user.id, user.username, role_now, user.token_version), created

    async def _bound(self, subject: str) -> User | None:
        async with self._db() as s:
            user: User | None = await s.scalar(select(User).where(User.oidc_subject == subject))
            return user

    async def _bind(self, user: User, subject: str) -> None:
        """Bind `user` to the provider account, unless another one already is: once bound,
        a provider user who renames themselves to this username is refused, not let in."""
        async with self._db() as s, s.begin():
            bound = await s.execute(
                update(User)
                .where(User.id == user.id, User.oidc_subject.is_(None))
                .values(oidc_subject=subject)
            )
        if bound.rowcount == 0:  # type: ignore[attr-defined]
            raise SignInRefused(
                "oidc_account_bound_elsewhere",
                f"the account {user.username!r} is bound to another sign-in at the provider; "
                "ask an administrator",
            )
        log.info("bound user %s to an OpenID account at their first OpenID sign-in",
                 user.username)  # fmt: skip

    async def _user(self, username: str) -> User | None:
        async with self._db() as s:
            user: User | None = await s.scalar(select(User).where(User.username == username))
            return user

    async def _create(
        self, username: str, claims: Mapping[str, Any], role: Role, subject: str
    ) -> tuple[User, bool]:
        try:
            async with self._db() as s, s.begin():
                user = User(
                    username=username,
                    display_name=self.rules.display_name(claims, username),
                    password_hash=NO_PASSWORD,
                    role=role,
                    created_at=await db_now(s),
                    oidc_subject=subject,
                )
                s.add(user)
            log.info("created user %s (%s) at their first OpenID sign-in", username, role)
            return user, True
        except IntegrityError:  # the same user's other tab created them a moment ago
            existing = await self._user(username)
            if existing is None:
                raise
            if existing.oidc_subject != subject:
                raise SignInRefused(
                    "oidc_account_bound_elsewhere",
                    f"the account {username!r} is bound to another sign-in at the provider",
                ) from None
            self.rules.role_of_existing(claims, existing.role)  # type: ignore[arg-type]
            return existing, False

    async def _metadata(self) -> dict[str, Any]:
        """The discovery document (Authlib keeps it per worker), checked once loaded: it must
        name our issuer, and only asymmetric algorithms are taken from it."""
        metadata: dict[str, Any] = await self._client.load_server_metadata()
        if not metadata.get("_checked"):
            named = str(metadata.get("issuer", ""))
            if named.rstrip("/") != self.issuer.rstrip("/"):
                metadata.pop("_loaded_at", None)  # read it again next time
                raise ValueError(f"the discovery document names issuer {named!r}")
            offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
            metadata["id_token_signing_alg_values_supported"] = [
                a for a in offered if a in SIGNING_ALGORITHMS
            ] or ["RS256"]
            metadata["_checked"] = True
        return metadata


def _digest(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()
