"""Hostile input gets a clear error and changes nothing: bodies too large or nested too deep,
numbers sent as strings, frames past the socket's limits, and a handler that fails."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from websockets.exceptions import ConnectionClosed

from delivery_service.storage.models import ResponseEvent
from tests.integration.conftest import World
from tests.support import Socket


async def stored(world: World, aid: str) -> int:
    async with world.sessions() as s:
        return int(
            await s.scalar(select(func.count()).where(ResponseEvent.attempt_id == uuid.UUID(aid)))
            or 0
        )


async def test_a_rest_body_over_the_limit_is_refused_with_413(world: World) -> None:
    aid = await world.started_attempt()
    huge = "x" * (world.settings.max_body_bytes + 1)
    reply = await world.student.http.post(
        f"/attempts/{aid}/answers", json={"item_id": "q1", "response": huge, "client_seq": 1}
    )
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "payload_too_large"
    assert await stored(world, aid) == 0


async def test_a_streamed_rest_body_over_the_limit_is_refused_with_413(world: World) -> None:
    """No Content-Length to go by: counted as it arrives."""
    aid = await world.started_attempt()
    piece = b"x" * 65536

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"item_id": "q1", "client_seq": 1, "response": "'
        for _ in range(world.settings.max_body_bytes // len(piece) + 1):
            yield piece
        yield b'"}'

    reply = await world.student.http.post(
        f"/attempts/{aid}/answers", content=chunks(), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "payload_too_large"
    assert await stored(world, aid) == 0


async def test_a_rest_body_nested_too_deep_is_refused_with_400(world: World) -> None:
    aid = await world.started_attempt()
    reply = await world.student.http.post(
        f"/attempts/{aid}/answers",
        content="[" * 30_000,
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_json"
    assert await stored(world, aid) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"item_id": "q1", "response": "B", "client_seq": "5"},
        {"item_id": "q1", "response": "B", "client_seq": 5.0},
        {"item_id": "q1", "response": "B", "client_seq": True},
        {"item_id": "q1", "response": "B", "client_seq": 5, "extra": 1},
    ],
)
async def test_rest_input_is_as_strict_as_the_sockets(world: World, body: dict[str, Any]) -> None:
    aid = await world.started_attempt()
    reply = await world.student.http.post(f"/attempts/{aid}/answers", json=body)
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "validation_error"
    assert await stored(world, aid) == 0


async def socket(world: World) -> tuple[str, Any]:
    aid = await world.started_attempt()
    return aid, Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket()))


async def test_a_frame_nested_too_deep_gets_invalid_message_and_the_socket_goes_on(
    world: World,
) -> None:
    aid, opening = await socket(world)
    async with opening as ws:
        await ws.until("attempt_state")
        await ws.connection.send("[" * 30_000)
        error = await ws.until("error")
        assert error["data"]["code"] == "invalid_message"
        nested = [[[[[[[[[["B"]]]]]]]]]]
        await ws.connection.send(json.dumps({"type": "submit_answer", "data": {
            "item_id": "q1", "response": nested, "client_seq": 1}}))  # fmt: skip
        await ws.until("error")
        ack = await ws.request("submit_answer", {"item_id": "q1", "response": "B",
                                                 "client_seq": 2})  # fmt: skip
        assert ack["type"] == "answer_feedback"
    assert await stored(world, aid) == 1


async def test_a_frame_over_the_limit_gets_message_too_large_and_the_socket_goes_on(
    world: World,
) -> None:
    aid, opening = await socket(world)
    async with opening as ws:
        await ws.until("attempt_state")
        big = json.dumps({"type": "submit_answer", "data": {
            "item_id": "q1", "response": "x" * world.settings.ws_max_message_bytes,
            "client_seq": 1}})  # fmt: skip
        await ws.connection.send(big)
        assert (await ws.until("error"))["data"]["code"] == "message_too_large"
        assert (await ws.request("heartbeat"))["type"] == "pong"
    assert await stored(world, aid) == 0


async def test_a_frame_far_over_the_limit_closes_the_socket_with_1009(world: World) -> None:
    """Past four times the limit the frame is not even read: the protocol closes (1009)."""
    _, opening = await socket(world)
    async with opening as ws:
        await ws.until("attempt_state")
        await ws.connection.send("x" * (4 * world.settings.ws_max_message_bytes + 1))
        with pytest.raises(ConnectionClosed):
            await ws.until("never sent", timeout=5)
        assert ws.connection.close_code == 1009


async def test_a_failing_handler_answers_json_and_never_a_text_page(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(world.served.runtime.catalog, "list_tests", broken)
    reply = await world.student.http.get("/tests")
    assert reply.status_code == 500
    assert reply.json() == {
        "error": {"code": "internal_error", "message": "the server failed; retry"}
    }
