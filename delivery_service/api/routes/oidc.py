"""OpenID Connect sign-in: whether it is offered, the redirect to the provider, and the callback
that hands this server's token to the page that asked (services/oidc.py does the work).

The last two are browser navigations, not API calls: their answers are redirects. The token,
or a refusal's code and message, travel in the URL fragment of a path on this server (never
another host), which browsers neither send to servers nor put in a Referer; the page stores the
token where a password sign-in puts it and removes the fragment (web/lib/oidc.js).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from delivery_service.api.deps import RuntimeDep
from delivery_service.api.errors import ApiError
from delivery_service.api.routes.auth import record_sign_in
from delivery_service.runtime import Runtime
from delivery_service.services.oidc import OidcRefused, OidcSignIn

router = APIRouter(tags=["auth"])

#: binds a started flow to the browser that started it (services/oidc.py)
FLOW_COOKIE = "examserver_oidc"
COOKIE_PATH = "/api/v1/auth/oidc"
NEXT_MAX = 512
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


class OidcInfo(BaseModel):
    enabled: bool
    label: str | None = Field(None, description='the button reads "Sign in with LABEL"')
    login_url: str | None = Field(None, description="start here, with `?next=/page/`")


@router.get("/auth/oidc", response_model=OidcInfo)
async def oidc_info(runtime: RuntimeDep) -> OidcInfo:
    """Whether OpenID Connect sign-in is offered, and the label of its button (public)."""
    if runtime.oidc is None:
        return OidcInfo(enabled=False)
    return OidcInfo(enabled=True, label=runtime.oidc.label, login_url=f"{COOKIE_PATH}/login")


@router.get(
    "/auth/oidc/login",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "to the provider, or back to `next` with `#oidc_error=…`"}},
)
async def oidc_login(
    runtime: RuntimeDep,
    request: Request,
    next_: Annotated[
        str,
        Query(alias="next", max_length=NEXT_MAX, description="a path on this server to return to"),
    ] = "/",
    page: Annotated[
        str,
        Query(
            pattern=r"^[A-Za-z0-9_-]{16,128}$",
            description="a random value the page keeps (sessionStorage) and expects back in "
            "the fragment (`oidc_page`) before it takes a token from it",
        ),
    ] = "",
) -> RedirectResponse:
    """Start signing in at the provider; the browser comes back through the callback."""
    oidc = _configured(runtime)
    next_path = local_path(next_)
    if next_path is None:
        raise ApiError(400, "invalid_next", "next must be a path on this server, like /console/")
    redirect_uri = runtime.settings.oidc_redirect_url or str(request.url_for("oidc_callback"))
    try:
        started = await oidc.start(
            next_path=next_path,
            redirect_uri=redirect_uri,
            binding=request.cookies.get(FLOW_COOKIE),
            page=page,
        )
    except OidcRefused as refused:
        return _back(refused.next_path, oidc_error=refused.code, oidc_message=refused.message)
    response = RedirectResponse(started.url, status_code=302, headers=NO_STORE)
    response.set_cookie(
        FLOW_COOKIE,
        started.binding,
        max_age=oidc.flow_seconds,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to us
    )
    return response


@router.get(
    "/auth/oidc/callback",
    name="oidc_callback",
    status_code=303,
    response_class=RedirectResponse,
    responses={303: {"description": "to `next` with `#oidc_token=…` or `#oidc_error=…`"}},
)
async def oidc_callback(
    runtime: RuntimeDep,
    request: Request,
    state: Annotated[str, Query(max_length=256)] = "",
    code: Annotated[str, Query(max_length=4096)] = "",
    error: Annotated[str, Query(max_length=256)] = "",
    iss: Annotated[str, Query(max_length=1024)] = "",
) -> RedirectResponse:
    """Where the provider sends the browser back: the code is exchanged, the ID token checked,
    and the user signed in; the page that asked gets the token in the URL fragment."""
    oidc = _configured(runtime)
    try:
        signed_in = await oidc.finish(
            state=state,
            code=code,
            error=error,
            issuer=iss,
            binding=request.cookies.get(FLOW_COOKIE),
        )
    except OidcRefused as refused:
        response = _back(refused.next_path, oidc_error=refused.code, oidc_message=refused.message)
    else:
        how = {"method": "oidc", **({"created": True} if signed_in.created else {})}
        await record_sign_in(runtime, request, signed_in.principal, **how)
        response = _back(
            signed_in.next_path,
            oidc_token=signed_in.token,
            oidc_page=signed_in.page,
            expires_in=str(runtime.tokens.ttl_seconds),
        )
    # The cookie stays (until its max-age): a flow started in another tab still needs it.
    return response


def local_path(value: str) -> str | None:
    """`value` without its fragment if it is a path on this server (`/console/?session=…`),
    else None: never another host (`//evil.example`, `/\\evil.example`, `https://…`), and no
    control characters, which browsers strip before reading the URL."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return urlunsplit(("", "", parts.path, parts.query, ""))


def _configured(runtime: Runtime) -> OidcSignIn:
    if runtime.oidc is None:
        raise ApiError(404, "oidc_not_configured", "OpenID Connect sign-in is not configured")
    return runtime.oidc


def _back(path: str, **fragment: str) -> RedirectResponse:
    return RedirectResponse(f"{path}#{urlencode(fragment)}", status_code=303, headers=NO_STORE)
