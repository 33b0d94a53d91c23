"""The attempt WebSocket on both deployments: auth, the message catalogue, bad input, events."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from delivery_service.settings import Settings
from tests.integration.conftest import World
from tests.support import Socket


@pytest.fixture
def server_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "ws_auth_timeout_seconds": 0.5,
            "ws_rate_per_second": 5.0,
            "ws_rate_burst": 10,
            "ws_max_violations": 12,
            "ws_max_message_bytes": 2048,
        }
    )


async def greeted(socket: Socket) -> dict[str, object]:
    auth = await socket.until("auth_success")
    state = await socket.until("attempt_state")
    timer = await socket.until("timer")
    return {"auth": auth, "state": state, "timer": timer}


async def drain(socket: Socket) -> None:
    while True:
        await socket.receive(timeout=5)


async def test_ticket_auth_greets_with_state_and_timer_and_is_single_use(world: World) -> None:
    aid = await world.started_attempt()
    ticket = await world.student.ticket(aid)
    async with Socket.open(world.student.ws_url(aid, ticket=ticket)) as socket:
        hello = await greeted(socket)
    assert hello["auth"]["data"]["user"]["username"] == "student1"  # type: ignore[index]
    assert hello["state"]["data"]["state"] == "in_progress"  # type: ignore[index]
    assert hello["timer"]["data"]["timer"]["running"] is True  # type: ignore[index]
    with pytest.raises(InvalidStatus) as refused:
        async with Socket.open(world.student.ws_url(aid, ticket=ticket)):
            pass
    assert refused.value.response.status_code == 403


async def test_a_ticket_bound_to_another_attempt_is_refused(world: World) -> None:
    aid = await world.started_attempt()
    other = await world.started_attempt()
    ticket = await world.student.ticket(other)
    with pytest.raises(InvalidStatus):
        async with Socket.open(world.student.ws_url(aid, ticket=ticket)):
            pass


async def test_jwt_as_first_message_authenticates(world: World) -> None:
    aid = await world.started_attempt()
    async with Socket.open(world.student.ws_url(aid)) as socket:
        await socket.send("auth", {"token": world.student.token})
        hello = await greeted(socket)
    assert hello["state"]["data"]["id"] == aid  # type: ignore[index]


async def test_no_auth_within_the_timeout_closes_with_4401(world: World) -> None:
    aid = await world.started_attempt()
    async with Socket.open(world.student.ws_url(aid)) as socket:
        error = await socket.until("error")
        assert error["data"]["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed):
            await socket.receive(timeout=5)
        assert socket.connection.close_code == 4401


async def test_another_candidates_attempt_is_refused(world: World) -> None:
    aid = await world.started_attempt()
    async with Socket.open(world.other.ws_url(aid)) as socket:
        await socket.send("auth", {"token": world.other.token})
        error = await socket.until("error")
        assert error["data"]["code"] == "attempt_not_found"
        with pytest.raises(ConnectionClosed):
            await socket.receive(timeout=5)


async def test_staff_may_read_an_attempt_but_not_open_its_socket(world: World) -> None:
    """The socket is the candidate's seat: a proctor is told no (4403), not that it is missing,
    and nothing is written to the attempt's ledger for them."""
    aid = await world.started_attempt()
    before = await world.teacher.get(f"/attempts/{aid}/ledger")
    async with Socket.open(world.teacher.ws_url(aid)) as socket:
        await socket.send("auth", {"token": world.teacher.token})
        error = await socket.until("error")
        assert error["data"]["code"] == "forbidden"
        with pytest.raises(ConnectionClosed):
            await socket.receive(timeout=5)
        assert socket.connection.close_code == 4403
    assert await world.teacher.get(f"/attempts/{aid}/ledger") == before


async def test_a_foreign_origin_is_refused_and_the_own_host_accepted(world: World) -> None:
    aid = await world.started_attempt()
    with pytest.raises(InvalidStatus):
        async with Socket.open(
            world.student.ws_url(aid, ticket=await world.student.ticket()),
            origin="https://evil.example",  # type: ignore[arg-type]
        ):
            pass
    own = world.base_url
    async with Socket.open(
        world.student.ws_url(aid, ticket=await world.student.ticket()),
        origin=own,  # type: ignore[arg-type]
    ) as socket:
        await greeted(socket)


async def test_the_message_catalogue_takes_an_exam(world: World) -> None:
    test_id = await world.new_test()
    attempt = await world.student.post("/attempts", {"test_id": test_id}, expect=201)
    aid = attempt["id"]
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await greeted(ws)
        started = await ws.request("start_assessment", {"test_id": test_id})
        assert started["type"] == "assessment_started"
        assert started["data"]["state"] == "in_progress"
        question = await ws.until("question")
        assert question["data"]["item"]["item_id"] == "q1"

        ack = await ws.request("submit_answer", {"item_id": "q1", "response": "B", "client_seq": 1})
        assert ack["type"] == "answer_feedback"
        assert ack["data"]["applied"] is True
        assert "correct" not in json.dumps(ack)

        legacy = await ws.request(
            "submit_answer", {"question_id": "q2", "selected_option": "A", "client_seq": 2}
        )
        assert legacy["data"]["item_id"] == "q2"

        moved = await ws.request("navigate", {"to": 2})
        assert (moved["type"], moved["data"]["position"]) == ("question", 2)
        flagged = await ws.request("flag", {"item_id": "q3", "flagged": True})
        assert flagged == flagged | {
            "type": "flag_saved",
            "data": {"item_id": "q3", "flagged": True},
        }
        fetched = await ws.request("get_question", {"index": 0})
        assert fetched["data"]["response"] == ["B"]

        progress = await ws.request("get_progress")
        assert progress["data"] | {"timer": None} == {
            "state": "in_progress",
            "position": 0,
            "total_items": 4,
            "answered": 2,
            "flagged": 1,
            "timer": None,
        }
        timer = await ws.request("ping", {"client_time": 1234.5})
        assert timer["type"] == "timer"
        assert timer["data"]["client_time"] == 1234.5
        assert timer["data"]["timer"]["running"] is True
        pong = await ws.request("heartbeat")
        assert pong["type"] == "pong"

        done = await ws.request("end_assessment")
        assert done["type"] == "assessment_completed"
        assert done["data"]["reason"] == "submitted"
        assert done["data"]["answered"] == 2


async def test_bad_input_gets_an_error_and_the_socket_stays_usable(world: World) -> None:
    aid = await world.started_attempt()
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await greeted(ws)
        await ws.connection.send("{not json")
        assert (await ws.until("error"))["data"]["code"] == "invalid_json"
        unknown = await ws.request("launch_missiles")
        assert unknown["data"]["code"] == "unknown_type"
        wrong = await ws.request("flag", {"item_id": "q1", "flagged": "yes"})
        assert wrong["data"]["code"] == "invalid_message"
        foreign = await ws.request(
            "submit_answer", {"item_id": "zz", "response": "A", "client_seq": 1}
        )
        assert foreign["data"]["code"] == "unknown_item"
        await ws.connection.send(
            json.dumps({"type": "ping", "data": {"client_time": 1}, "pad": "x" * 4000})
        )
        assert (await ws.until("error"))["data"]["code"] == "message_too_large"
        still = await ws.request("get_progress")
        assert still["type"] == "progress_update"
        assert still["data"]["answered"] == 0


async def test_a_flood_is_rate_limited_then_repeated_abuse_closes_the_socket(world: World) -> None:
    aid = await world.started_attempt()
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await greeted(ws)
        for _ in range(40):
            await ws.send("heartbeat")
        with pytest.raises(ConnectionClosed):
            await drain(ws)
        codes = [m["data"]["code"] for m in ws.seen if m["type"] == "error"]
        assert "rate_limited" in codes
        assert ws.connection.close_code == 1008


async def test_a_second_connection_supersedes_the_first(world: World) -> None:
    aid = await world.started_attempt()
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as first:
        await greeted(first)
        async with Socket.open(
            world.student.ws_url(aid, ticket=await world.student.ticket())
        ) as second:
            await greeted(second)
            notice = await first.until("superseded")
            assert notice["data"]["reason"]
            with pytest.raises(ConnectionClosed):
                await first.receive(timeout=5)
            assert first.connection.close_code == 4409
            assert (await second.request("get_progress"))["type"] == "progress_update"


async def test_a_proctors_extension_reaches_the_candidate_at_once(world: World) -> None:
    aid = await world.started_attempt()
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        before = (await greeted(ws))["timer"]["data"]["timer"]  # type: ignore[index]
        await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": 300, "reason": "test"})
        event = await ws.until("timer")
        assert event["seq"]
        assert event["data"]["timer"]["remaining_ms"] > before["remaining_ms"] + 290_000


async def test_expiry_is_pushed_and_a_reconnect_after_it_replays_the_event(world: World) -> None:
    aid = await world.started_attempt()
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await greeted(ws)
        await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": -599, "reason": "test"})
        timer = await ws.until("timer")
        completed = await ws.until("assessment_completed", timeout=10)
        assert completed["data"]["reason"] == "expired"
    url = world.student.ws_url(aid, ticket=await world.student.ticket(), last_event_id=timer["seq"])
    async with Socket.open(url) as ws:
        auth = await ws.until("auth_success")
        assert auth["data"]["recovered"] is True
        replayed = await ws.until("assessment_completed")
        assert replayed["seq"] == completed["seq"]
        state = await ws.until("attempt_state")
        assert state["data"]["state"] == "expired"


async def test_a_client_that_saw_no_event_resumes_from_the_greetings_position(
    world: World,
) -> None:
    """`auth_success.data.last_event_id` is where the channel stood: coming back with it, a
    candidate who saw no event gets exactly what happened while away."""
    aid = await world.started_attempt()
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        position = (await ws.until("auth_success"))["data"]["last_event_id"]
        await ws.until("timer")
    assert position
    extended = await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": 60, "reason": "x"})
    url = world.student.ws_url(aid, ticket=await world.student.ticket(), last_event_id=position)
    async with Socket.open(url) as ws:
        assert (await ws.until("auth_success"))["data"]["recovered"] is True
        missed = await ws.until("timer")
        assert missed["seq"]  # the extension's event, replayed, not the greeting's own timer
        assert missed["data"]["timer"]["deadline"] == extended["deadline"]
        assert [m["type"] for m in ws.seen] == ["auth_success", "timer"]


async def test_an_unknown_epoch_is_not_recovered(world: World) -> None:
    aid = await world.started_attempt()
    url = world.student.ws_url(aid, ticket=await world.student.ticket(), last_event_id="old:3")
    async with Socket.open(url) as ws:
        auth = await ws.until("auth_success")
        assert auth["data"]["recovered"] is False
        await ws.until("attempt_state")


async def test_a_silent_socket_is_closed(world: World) -> None:
    aid = await world.started_attempt()
    async with running_quiet_server(world) as served:
        from tests.support import Api

        api = await Api.login(served.url, "student1")
        try:
            async with Socket.open(api.ws_url(aid, ticket=await api.ticket())) as ws:
                await greeted(ws)
                error = await ws.until("error", timeout=5)
                assert error["data"]["code"] == "heartbeat_timeout"
                with pytest.raises(ConnectionClosed):
                    await ws.receive(timeout=5)
                assert ws.connection.close_code == 4408
        finally:
            await api.close()


def running_quiet_server(world: World):  # type: ignore[no-untyped-def]
    from delivery_service.embedded import running_server

    return running_server(world.settings.model_copy(update={"ws_heartbeat_timeout_seconds": 1.0}))


async def test_an_unknown_ticket_is_refused_at_the_handshake(world: World) -> None:
    aid = await world.started_attempt()
    with pytest.raises(InvalidStatus) as refused:
        async with Socket.open(world.student.ws_url(aid, ticket="not-a-ticket")):
            pass
    assert refused.value.response.status_code == 403


async def test_answers_are_still_saved_when_the_ownership_check_cannot_reach_redis(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    aid = await world.started_attempt()
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await greeted(ws)

        async def unreachable(*_: object) -> bool:
            raise RedisConnectionError("Redis is down")

        monkeypatch.setattr(world.served.runtime.owners, "refresh", unreachable)
        ack = await ws.request("submit_answer", {"item_id": "q1", "response": "B", "client_seq": 1})
        assert ack["type"] == "answer_feedback"
    state = await world.student.get(f"/attempts/{aid}")
    assert state["responses"] == {"q1": ["B"]}
