"""Who may open a socket before it costs anything: the Origin check and a ticket's scope."""

from types import SimpleNamespace
from typing import Any

import pytest

from delivery_service.api.ws.handshake import origin_allowed, ticket_fits


def handshake(origin: str | None, *, scheme: str = "ws", host: str = "exam.example") -> Any:
    headers = {"host": host} | ({"origin": origin} if origin is not None else {})
    return SimpleNamespace(headers=headers, url=SimpleNamespace(scheme=scheme))


def test_a_client_without_an_origin_is_not_a_browser_and_is_let_in() -> None:
    assert origin_allowed(handshake(None), []) is True


@pytest.mark.parametrize(
    ("origin", "scheme", "allowed"),
    [
        ("http://exam.example", "ws", True),
        ("https://exam.example", "wss", True),
        ("https://exam.example", "ws", False),  # an https page on a plain-ws socket
        ("http://exam.example", "wss", False),
        ("http://evil.example", "ws", False),
        ("http://exam.example:8443", "ws", False),
    ],
)
def test_a_page_may_open_only_its_own_servers_socket(
    origin: str, scheme: str, allowed: bool
) -> None:
    assert origin_allowed(handshake(origin, scheme=scheme), []) is allowed


def test_an_allow_listed_origin_is_let_in_from_anywhere() -> None:
    ws = handshake("https://console.example")
    assert origin_allowed(ws, ["https://console.example"]) is True
    assert origin_allowed(ws, ["https://console.example/"]) is False  # exact entries only


def test_an_unbound_ticket_opens_any_socket() -> None:
    assert ticket_fits({"sub": "u1"}, ("attempt_id", "a1")) is True
    assert ticket_fits({"sub": "u1"}, ("session_id", "s1")) is True


def test_a_ticket_bound_to_an_attempt_opens_that_attempts_socket_only() -> None:
    claims = {"sub": "u1", "attempt_id": "a1"}
    assert ticket_fits(claims, ("attempt_id", "a1")) is True
    assert ticket_fits(claims, ("attempt_id", "a2")) is False
    assert ticket_fits(claims, ("session_id", "a1")) is False


def test_a_ticket_bound_to_a_session_does_not_open_an_attempt() -> None:
    claims = {"sub": "u1", "session_id": "s1"}
    assert ticket_fits(claims, ("session_id", "s1")) is True
    assert ticket_fits(claims, ("attempt_id", "s1")) is False
