"""Cross-site WebSocket hijacking: CORS does not cover WebSockets, so the server checks Origin
itself. A browser page may open a socket only from this server's own origin (scheme, host and
port) or an exact entry of `ALLOWED_ORIGINS`; a client that sends no Origin (not a browser) is
not a cross-site risk. Refused handshakes are refused before the socket opens (HTTP 403)."""

from __future__ import annotations

import uuid

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from delivery_service.settings import Settings
from tests.integration.conftest import World

TRUSTED = "https://exam.school.example"


@pytest.fixture
def server_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allowed_origins": [TRUSTED]})


def origins(host: str) -> dict[str, bool | int]:
    """Origin header -> True if the handshake may go ahead, else its refusal (`host` is
    host:port)."""
    name, port = host.split(":")
    return {
        "": True,  # no Origin: not a browser
        f"http://{host}": True,
        TRUSTED: True,
        f"https://{host}": 403,  # right host, wrong scheme
        f"ws://{host}": 403,
        f"http://{name}:{int(port) + 1}": 403,
        f"http://{host}.evil.example": 403,
        f"http://evil.example/{host}": 403,
        f"http://evil.example?{host}": 403,
        "http://evil.example": 403,
        "null": 403,  # sandboxed iframes, file: pages
        f"{TRUSTED}/": 403,  # allow-list entries match exactly
        f"{TRUSTED}:443": 403,
        "https://EXAM.school.example": 403,
        f"{TRUSTED}.evil.example": 403,
    }


async def opens(url: str, origin: str) -> bool | int:
    """True when the handshake succeeds, else the HTTP status it was refused with."""
    headers = {"Origin": origin} if origin else {}
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10):
            return True
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.parametrize("socket", ["attempt", "session"])
async def test_only_this_servers_own_origin_and_listed_ones_may_open_a_socket(
    world: World, socket: str
) -> None:
    host = world.base_url.removeprefix("http://")
    aid = await world.started_attempt()
    # The Origin is judged before anything is looked up: any session id will do.
    path = f"attempts/{aid}" if socket == "attempt" else f"sessions/{uuid.uuid4()}"
    verdicts: dict[str, bool | int] = {}
    for origin in origins(host):
        # A fresh single-use ticket each time: a refused handshake must not be what used it.
        url = f"ws://{host}/api/v1/{path}/ws?ticket={await world.student.ticket()}"
        verdicts[origin] = await opens(url, origin)
    assert verdicts == origins(host)
