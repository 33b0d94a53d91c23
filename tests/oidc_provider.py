"""A stand-in OpenID provider, served over real HTTP on a free loopback port for a test.

It does what a provider does for the authorization code flow with PKCE: discovery, an
authorization endpoint that signs in `provider.user` at once (no login page) and redirects back
with a code, a token endpoint that checks the client's secret, the redirect URI and the PKCE
verifier and answers with an RS256 ID token, and the JWKS. Knobs let a test make it misbehave:
`tamper` overrides ID token claims, `signing_key` signs with another key, `replay_id_token`
answers with an old ID token, `error` refuses at the authorization endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "examserver"
CLIENT_SECRET = "stand-in-client-secret"
KEY = RSAKey.generate_key(2048, parameters={"kid": "stand-in-1", "use": "sig", "alg": "RS256"})


def other_key() -> RSAKey:
    """A key the provider does not publish, under the published key's id (a forgery)."""
    return RSAKey.generate_key(2048, parameters={"kid": "stand-in-1", "use": "sig"})


@dataclass
class Grant:
    redirect_uri: str
    nonce: str | None
    challenge: str
    user: dict[str, Any]


@dataclass
class StandInProvider:
    issuer: str = ""
    user: dict[str, Any] = field(
        default_factory=lambda: {"sub": "u-1", "preferred_username": "student1", "name": "S One"}
    )
    tamper: dict[str, Any] = field(default_factory=dict)
    signing_key: RSAKey = field(default_factory=lambda: KEY)
    replay_id_token: str | None = None
    error: str | None = None
    send_iss: bool = False
    grants: dict[str, Grant] = field(default_factory=dict)
    id_tokens: list[str] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """EXAMSERVER_OIDC_* settings (as Settings fields) for a server using this provider."""
        return {
            "oidc_issuer": self.issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "oidc_label": "Stand-in ID",
        } | overrides

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def discovery(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }
        )

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request", "why": "PKCE"}, status_code=400)
        if "openid" not in q.get("scope", "").split():
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        back: dict[str, str] = {"state": q["state"]}
        if self.error:
            back["error"] = self.error
        else:
            code = secrets.token_urlsafe(16)
            self.grants[code] = Grant(
                q["redirect_uri"], q.get("nonce"), q["code_challenge"], dict(self.user)
            )
            back["code"] = code
        if self.send_iss:
            back["iss"] = self.issuer
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode(back)}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        self.token_requests.append(form)
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.grants.pop(form.get("code", ""), None)
        if grant is None or form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if form.get("redirect_uri") != grant.redirect_uri:
            return JSONResponse({"error": "invalid_grant", "why": "redirect_uri"}, status_code=400)
        verifier = form.get("code_verifier", "").encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if challenge.decode() != grant.challenge:
            return JSONResponse({"error": "invalid_grant", "why": "PKCE"}, status_code=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            **({"nonce": grant.nonce} if grant.nonce else {}),
            **grant.user,
        } | self.tamper
        id_token = jwt.encode(
            {"alg": "RS256", "kid": str(self.signing_key.kid)}, claims, self.signing_key
        )
        self.id_tokens.append(id_token)
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.replay_id_token or id_token,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def jwks(self, _: Request) -> Response:
        return JSONResponse({"keys": [KEY.as_dict(private=False)]})


@asynccontextmanager
async def stand_in_provider() -> AsyncIterator[StandInProvider]:
    """The provider, listening on a free loopback port until the block ends."""
    provider = StandInProvider()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    provider.issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(provider.app(), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield provider
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
        sock.close()
