"""The integrity ledger, lockdown policies and the staff views, against both deployments."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from delivery_service.storage.models import LedgerEvent
from integrity import seb
from tests.integration.conftest import World
from tests.integration.test_classes_and_sessions import scheduled, session_socket
from tests.integration.test_cli import examserver
from tests.support import Socket

_ids = itertools.count(1)
_clock = [1_790_000_000_000.0]  # the candidate's browser clock, ms


def tab_switch(away_ms: int) -> list[dict[str, Any]]:
    """What the candidate app sends for one tab switch, a minute after the last one."""
    n = next(_ids)
    _clock[0] += 60_000
    left = _clock[0]
    _clock[0] += away_ms
    back = _clock[0]
    return [
        {"type": "integrity_event",
         "data": {"kind": "tab_hidden", "client_event_id": f"h{n}", "client_time": left}},
        {"type": "integrity_event",
         "data": {"kind": "tab_visible", "duration_ms": away_ms, "client_event_id": f"v{n}",
                  "client_time": back}},
        {"type": "tab_violation",
         "data": {"duration_ms": away_ms, "client_event_id": f"t{n}", "client_time": back}},
    ]  # fmt: skip


async def seen_or_next(ws: Socket, type_: str) -> dict[str, Any]:
    """A pushed message may arrive before the reply the test was waiting for."""
    for message in ws.seen:
        if message["type"] == type_:
            return message
    return await ws.until(type_)


async def attempt_with(world: World, **lockdown: Any) -> str:
    test_id = await world.new_test(lockdown=lockdown)
    attempt = await world.student.post("/attempts", {"test_id": test_id}, expect=201)
    await world.student.post(f"/attempts/{attempt['id']}/start")
    return str(attempt["id"])


async def events(world: World, aid: str, batch: list[dict[str, Any]], expect: int = 200) -> Any:
    return await world.student.post(f"/attempts/{aid}/events", {"events": batch}, expect=expect)


# ---- the ledger ----


async def test_every_step_of_an_attempt_is_sealed_in_one_chain_that_verifies(world: World) -> None:
    aid = await world.started_attempt()
    await world.student.post(f"/attempts/{aid}/answers", {"item_id": "q1", "response": "B",
                                                         "client_seq": 1})  # fmt: skip
    await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": 60, "reason": "fire alarm"})
    await events(world, aid, tab_switch(3000))
    await world.student.post(f"/attempts/{aid}/submit")

    chain = await world.teacher.get(f"/attempts/{aid}/ledger")
    assert [(e["seq"], e["type"], e["source"]) for e in chain] == [
        (1, "attempt_created", "server"),
        (2, "attempt_started", "candidate"),
        (3, "answer_saved", "candidate"),
        (4, "time_extended", "staff"),
        (5, "tab_hidden", "candidate"),
        (6, "tab_visible", "candidate"),
        (7, "tab_violation", "candidate"),
        (8, "attempt_submitted", "candidate"),
    ]
    assert chain[3]["reason"] == "fire alarm"
    assert chain[2]["payload"]["response_sha256"]  # the answer is chained by its digest
    verdict = await world.teacher.get(f"/attempts/{aid}/ledger/verify")
    assert verdict == {
        "chain": f"attempt:{aid}", "ok": True, "events": 8, "head_seq": 8, "first_broken": None,
    }  # fmt: skip


async def test_a_row_changed_in_sql_is_refused_and_if_forced_is_caught(world: World) -> None:
    aid = await world.started_attempt()
    for seq in (1, 2, 3):
        await world.student.post(f"/attempts/{aid}/answers", {"item_id": "q1", "response": "B",
                                                             "client_seq": seq})  # fmt: skip
    postgres = world.settings.database_url.startswith("postgresql")
    async with world.sessions() as s:
        # The database itself refuses to change the ledger...
        with pytest.raises(DBAPIError, match="append-only"):
            async with s.begin():
                await s.execute(text("UPDATE ledger_events SET type = 'x' WHERE seq = 3"))
        with pytest.raises(DBAPIError, match="append-only"):
            async with s.begin():
                await s.execute(text("DELETE FROM ledger_events WHERE seq = 5"))
        # ...so a forger must get round it: the chain still shows where.
        async with s.begin():
            if postgres:
                await s.execute(text("SET LOCAL session_replication_role = replica"))
            else:
                await s.execute(text("DROP TRIGGER ledger_events_no_update"))
            await s.execute(
                text(
                    "UPDATE ledger_events SET payload = "
                    + ("CAST(:p AS JSONB)" if postgres else ":p")
                    + " WHERE chain = :c AND seq = 4"
                ).bindparams(p='{"item_id": "q1", "client_seq": 2, "applied": true}',
                             c=f"attempt:{aid}")
            )  # fmt: skip
    verdict = await world.teacher.get(f"/attempts/{aid}/ledger/verify")
    assert verdict["ok"] is False
    assert {k: verdict["first_broken"][k] for k in ("seq", "problem")} == {
        "seq": 4, "problem": "seal_mismatch",
    }  # fmt: skip

    env = {
        "EXAMSERVER_DATABASE_URL": world.settings.database_url,
        "EXAMSERVER_LEDGER_KEY": world.settings.ledger_key,
        "EXAMSERVER_ENVIRONMENT": "test",
    }
    one = examserver("verify-ledger", "--attempt", aid, env=env)
    assert one.returncode == 1, one.stdout + one.stderr
    assert f"BROKEN attempt:{aid}: event 4 (seal_mismatch)" in one.stdout
    every = examserver("verify-ledger", env=env)
    assert every.returncode == 1
    assert "1 broken" in every.stdout


async def test_events_cut_off_the_end_of_a_chain_are_caught(world: World) -> None:
    aid = await world.started_attempt()
    await world.student.post(f"/attempts/{aid}/answers", {"item_id": "q1", "response": "B",
                                                         "client_seq": 1})  # fmt: skip
    postgres = world.settings.database_url.startswith("postgresql")
    async with world.sessions() as s, s.begin():
        if postgres:
            await s.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            await s.execute(text("DROP TRIGGER ledger_events_no_delete"))
        await s.execute(
            text("DELETE FROM ledger_events WHERE chain = :c AND seq = 3").bindparams(
                c=f"attempt:{aid}"
            )
        )
    verdict = await world.teacher.get(f"/attempts/{aid}/ledger/verify")
    assert verdict["first_broken"]["problem"] == "truncated"
    env = {"EXAMSERVER_DATABASE_URL": world.settings.database_url,
           "EXAMSERVER_ENVIRONMENT": "test"}  # fmt: skip
    assert examserver("verify-ledger", "--attempt", aid, env=env).returncode == 1


async def test_concurrent_writes_to_one_attempt_keep_one_unbroken_chain(world: World) -> None:
    aid = await world.started_attempt()

    async def answer(seq: int) -> None:
        body = {"item_id": f"q{seq % 4 + 1}", "response": "A", "client_seq": seq}
        await world.student.post(f"/attempts/{aid}/answers", body)

    async def sensor(n: int) -> None:
        batch = [{"type": "integrity_event", "data": {"kind": "window_blur",
                                                       "client_event_id": f"c{n}"}}]  # fmt: skip
        await events(world, aid, batch)

    await asyncio.gather(*(answer(n) for n in range(1, 21)), *(sensor(n) for n in range(20)))
    chain = await world.teacher.get(f"/attempts/{aid}/ledger")
    assert [e["seq"] for e in chain] == list(range(1, 43))
    assert (await world.teacher.get(f"/attempts/{aid}/ledger/verify"))["ok"] is True


async def test_an_event_resent_from_the_outbox_is_stored_once(world: World) -> None:
    aid = await world.started_attempt()
    batch = [{"type": "integrity_event", "data": {"kind": "paste", "client_event_id": "p-1"}}]
    first = await events(world, aid, batch)
    again = await events(world, aid, batch)
    assert first["events"][0]["event_id"] == again["events"][0]["event_id"]
    assert [first["events"][0]["duplicate"], again["events"][0]["duplicate"]] == [False, True]
    async with world.sessions() as s:
        stored = list(await s.scalars(select(LedgerEvent).where(LedgerEvent.type == "paste")))
    assert len(stored) == 1


# ---- who may read and write ----


async def test_a_candidate_cannot_read_any_ledger_or_write_into_another_attempt(
    world: World,
) -> None:
    mine = await world.started_attempt()
    theirs_test = await world.new_test()
    theirs = await world.other.post("/attempts", {"test_id": theirs_test}, expect=201)
    for path in (f"/attempts/{mine}/ledger", f"/attempts/{mine}/ledger/verify",
                 f"/attempts/{mine}/integrity"):  # fmt: skip
        refused = await world.student.get(path, expect=403)
        assert refused["error"]["code"] == "forbidden"
    hidden = await world.student.get(f"/attempts/{theirs['id']}/ledger", expect=404)
    assert hidden["error"]["code"] == "attempt_not_found"
    written = await events(world, theirs["id"], tab_switch(1000), expect=404)
    assert written["error"]["code"] == "attempt_not_found"
    assert (await world.student.get("/integrity/review", expect=403))["error"][
        "code"
    ] == "forbidden"
    async with world.sessions() as s:
        rows = await s.scalars(
            select(LedgerEvent).where(LedgerEvent.attempt_id == uuid.UUID(theirs["id"]))
        )
        assert [r.type for r in rows] == ["attempt_created"]


async def test_staff_of_another_class_cannot_read_a_session_attempts_ledger(world: World) -> None:
    _, sid = await scheduled(world, "student1")
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with await session_socket(world.student, sid) as ws:
        await ws.until("state_sync_response")
        await world.teacher.post(f"/sessions/{sid}/start")
        started = await ws.until("session_started")
    aid = started["data"]["attempt_id"]
    assert (await world.teacher.get(f"/attempts/{aid}/ledger/verify"))["ok"] is True
    refused = await world.teacher2.get(f"/attempts/{aid}/ledger", expect=403)
    assert refused["error"]["code"] == "forbidden"
    assert (await world.admin.get(f"/attempts/{aid}/ledger/verify"))["ok"] is True


async def test_the_audit_trail_is_for_admins_and_needs_reasons_for_outcome_changes(
    world: World,
) -> None:
    aid = await world.started_attempt()
    missing = await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": 60}, expect=422)
    assert missing["error"]["code"] == "reason_required"
    await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": 60, "reason": "power cut"})
    await world.teacher.post(f"/attempts/{aid}/pause")
    await world.teacher.post(f"/attempts/{aid}/terminate", {"reason": "notes on the desk"})
    assert (await world.teacher.get("/audit", expect=403))["error"]["code"] == "forbidden"
    trail = await world.admin.get(f"/audit?attempt_id={aid}")
    assert [(e["type"], e["actor"], e["candidate"], e["reason"]) for e in trail] == [
        ("attempt_terminated", "teacher", "student1", "notes on the desk"),
        ("attempt_paused", "teacher", "student1", None),
        ("time_extended", "teacher", "student1", "power cut"),
    ]
    only = await world.admin.get("/audit?action=time_extended")
    assert [e["attempt_id"] for e in only] == [aid]


# ---- lockdown policy ----


async def test_the_candidate_is_told_the_policy_but_never_the_seb_keys(world: World) -> None:
    key = "ab" * 32
    aid = await attempt_with(world, require_fullscreen=True, forbid_copy_paste=True,
                             allowed_tab_switches=2)  # fmt: skip
    view = await world.student.get(f"/attempts/{aid}")
    assert view["lockdown"] | {} == view["lockdown"]
    assert (view["lockdown"]["require_fullscreen"], view["lockdown"]["allowed_tab_switches"]) == (
        True,
        2,
    )
    test_id = view["test_id"]
    refused = await world.student.http.put(f"/tests/{test_id}/lockdown", json={})
    assert refused.status_code == 403
    changed = await world.teacher.http.put(
        f"/tests/{test_id}/lockdown", json={"require_seb": True, "seb_config_keys": [key]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["lockdown"]["seb_config_keys"] == [key]  # staff see the keys
    as_candidate = await world.student.get(f"/tests/{test_id}")
    assert "seb_config_keys" not in as_candidate["lockdown"]
    invalid = await world.teacher.http.put(f"/tests/{test_id}/lockdown", json={"require_seb": True})
    assert invalid.status_code == 422


async def test_a_warn_policy_warns_the_candidate_and_changes_nothing_else(world: World) -> None:
    aid = await attempt_with(world, allowed_tab_switches=1, on_exceed="warn")
    url = world.student.ws_url(aid, ticket=await world.student.ticket(aid))
    async with Socket.open(url) as ws:
        await ws.until("attempt_state")
        batch = tab_switch(4000) + tab_switch(6000)
        acked = await ws.request("integrity_batch", {"events": batch})
        assert acked["type"] == "events_recorded"
        assert [e["duplicate"] for e in acked["data"]] == [False] * 6
        warning = await seen_or_next(ws, "integrity_warning")
    assert warning["data"] | {"at": None} == {
        "rule": "tab_switch_limit", "action": "warn", "tab_switches": 2,
        "allowed_tab_switches": 1, "reason": "left the exam 2 times (allowed 1); away 6.0 s",
        "at": None,
    }  # fmt: skip
    view = await world.teacher.get(f"/attempts/{aid}")
    assert (view["state"], view["review"]) == ("in_progress", None)


async def test_past_the_limit_a_flag_policy_marks_the_attempt_for_review(world: World) -> None:
    aid = await attempt_with(world, allowed_tab_switches=0, on_exceed="flag",
                             ignore_absence_under_ms=2000)  # fmt: skip
    await events(world, aid, tab_switch(500))  # a notification: recorded, not counted
    assert (await world.teacher.get(f"/attempts/{aid}"))["review"] is None
    await events(world, aid, tab_switch(90_000))
    view = await world.teacher.get(f"/attempts/{aid}")
    (reason,) = view["review"]
    assert (reason["rule"], reason["action"]) == ("tab_switch_limit", "flag")
    chain = {e["event_id"]: e for e in await world.teacher.get(f"/attempts/{aid}/ledger")}
    assert {chain[i]["type"] for i in reason["event_ids"]} == {"tab_hidden", "tab_visible"}
    queue = await world.teacher.get("/integrity/review")
    assert [(q["attempt_id"], q["candidate"]) for q in queue] == [(aid, "student1")]
    assert view["state"] == "in_progress"


async def test_past_the_limit_a_pause_policy_pauses_the_attempt(world: World) -> None:
    aid = await attempt_with(world, allowed_tab_switches=0, on_exceed="pause")
    url = world.student.ws_url(aid, ticket=await world.student.ticket(aid))
    async with Socket.open(url) as ws:
        await ws.until("attempt_state")
        await ws.request("integrity_batch", {"events": tab_switch(5000)})
        while not any(m["type"] == "timer" and m["data"]["state"] == "paused" for m in ws.seen):
            await ws.until("timer")
    view = await world.teacher.get(f"/attempts/{aid}")
    assert view["state"] == "paused"
    types = [(e["type"], e["source"]) for e in await world.teacher.get(f"/attempts/{aid}/ledger")]
    assert types[-2:] == [("violation", "server"), ("attempt_paused", "server")]


async def test_past_the_limit_a_terminate_policy_ends_the_attempt(world: World) -> None:
    aid = await attempt_with(world, allowed_tab_switches=1, on_exceed="terminate")
    await events(world, aid, tab_switch(5000))
    assert (await world.student.get(f"/attempts/{aid}"))["state"] == "in_progress"
    await events(world, aid, tab_switch(5000))
    view = await world.student.get(f"/attempts/{aid}")
    assert (view["state"], view["end_reason"]) == ("terminated", "terminated")
    refused = await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q1", "response": "A", "client_seq": 1}, expect=409
    )
    assert refused["error"]["code"] == "attempt_not_in_progress"
    chain = await world.teacher.get(f"/attempts/{aid}/ledger")
    assert [(e["type"], e["source"]) for e in chain[-3:]] == [
        ("violation", "server"),
        ("attempt_terminated", "server"),
        ("late_answer_refused", "server"),
    ]
    assert chain[-1]["payload"] == {"item_id": "q1", "client_seq": 1, "state": "terminated"}


async def test_forbidden_copy_paste_flags_and_required_fullscreen_warns(world: World) -> None:
    aid = await attempt_with(world, forbid_copy_paste=True, require_fullscreen=True)
    batch = [
        {"type": "integrity_event", "data": {"kind": "paste", "client_event_id": "cp1"}},
        {"type": "integrity_event", "data": {"kind": "fullscreen_exit", "client_event_id": "f1"}},
    ]
    await events(world, aid, batch)
    view = await world.teacher.get(f"/attempts/{aid}")
    assert [r["rule"] for r in view["review"]] == ["copy_paste"]
    report = await world.teacher.get(f"/attempts/{aid}/integrity")
    assert [(v["rule"], v["action"]) for v in report["violations"]] == [
        ("copy_paste", "flag"),
        ("fullscreen_exit", "warn"),
    ]
    assert len(report["incidents"]) == 1  # one burst, one incident


async def test_the_integrity_report_tells_the_whole_story(world: World) -> None:
    aid = await attempt_with(world, allowed_tab_switches=0, on_exceed="flag")
    url = world.student.ws_url(aid, ticket=await world.student.ticket(aid))
    async with Socket.open(url) as ws:
        await ws.until("attempt_state")
        await ws.request("submit_answer", {"item_id": "q2", "response": "B", "client_seq": 1})
        await ws.request("integrity_batch", {"events": tab_switch(12_000)})
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket(aid))) as ws:
        await ws.until("attempt_state")
    report = await world.teacher.get(f"/attempts/{aid}/integrity")
    assert report["verification"]["ok"] is True
    assert report["attempt"]["candidate"]["username"] == "student1"
    assert report["tab_switches"] == 1
    assert report["incidents"][0]["longest_absence_ms"] == 12_000
    assert [c["type"] for c in report["connections"]] == ["connection_opened"] * 2
    types = [e["type"] for e in report["timeline"]]
    for expected in ("attempt_started", "ticket_issued", "answer_saved", "tab_visible",
                     "violation"):  # fmt: skip
        assert expected in types
    assert report["review"][0]["rule"] == "tab_switch_limit"


async def test_a_second_tab_is_recorded_as_superseding_the_first(world: World) -> None:
    aid = await world.started_attempt()
    first = world.student.ws_url(aid, ticket=await world.student.ticket(aid))
    async with Socket.open(first) as one:
        await one.until("attempt_state")
        second = world.student.ws_url(aid, ticket=await world.student.ticket(aid))
        async with Socket.open(second) as two:
            await two.until("attempt_state")
            await one.until("superseded")
    chain = await world.teacher.get(f"/attempts/{aid}/ledger")
    superseded = [e for e in chain if e["type"] == "connection_superseded"]
    assert len(superseded) == 1
    opened = [e["payload"]["connection_id"] for e in chain if e["type"] == "connection_opened"]
    assert superseded[0]["payload"]["superseded_connection_id"] == opened[0]


# ---- Safe Exam Browser ----

CONFIG_KEY = "5e" * 32


def seb_headers(url: str, key: str = CONFIG_KEY) -> dict[str, str]:
    return {seb.CONFIG_KEY_HEADER: seb.expected_hash(url, key)}


async def test_a_seb_test_refuses_other_browsers_and_accepts_safe_exam_browser(
    world: World,
) -> None:
    test_id = await world.new_test(lockdown={"require_seb": True, "seb_config_keys": [CONFIG_KEY]})
    create = f"{world.base_url}/api/v1/attempts"
    body = {"test_id": test_id}
    plain = await world.student.http.post("/attempts", json=body)
    assert (plain.status_code, plain.json()["error"]["code"]) == (403, "seb_required")
    forged = await world.student.http.post(
        "/attempts", json=body, headers=seb_headers(create, "00" * 32)
    )
    assert (forged.status_code, forged.json()["error"]["code"]) == (403, "seb_key_invalid")
    replayed = await world.student.http.post(
        "/attempts", json=body, headers=seb_headers(create + "/other")
    )
    assert replayed.json()["error"]["code"] == "seb_key_invalid"
    made = await world.student.http.post("/attempts", json=body, headers=seb_headers(create))
    assert made.status_code == 201, made.text
    aid = made.json()["id"]

    start = f"{world.base_url}/api/v1/attempts/{aid}/start"
    assert (await world.student.http.post(f"/attempts/{aid}/start")).status_code == 403
    started = await world.student.http.post(f"/attempts/{aid}/start", headers=seb_headers(start))
    assert started.status_code == 200, started.text
    # Staff are not held to it.
    assert (await world.teacher.http.get(f"/attempts/{aid}")).status_code == 200

    # A socket needs the proof too: from a ticket issued to SEB, or on its own handshake.
    tickets = f"{world.base_url}/api/v1/ws-tickets"
    no_proof = await world.student.http.post("/ws-tickets", json={"attempt_id": aid})
    assert no_proof.json()["error"]["code"] == "seb_required"
    unbound = await world.student.ticket()
    async with Socket.open(world.student.ws_url(aid, ticket=unbound)) as ws:
        refused = await ws.until("error")
        assert refused["data"]["code"] == "seb_required"
        await ws.connection.wait_closed()
        assert ws.connection.close_code == 4403
    proved = await world.student.http.post(
        "/ws-tickets", json={"attempt_id": aid}, headers=seb_headers(tickets)
    )
    assert proved.status_code == 201, proved.text
    async with Socket.open(world.student.ws_url(aid, ticket=proved.json()["ticket"])) as ws:
        assert (await ws.until("attempt_state"))["data"]["state"] == "in_progress"

    async with world.sessions() as s:
        failures = list(
            await s.scalars(select(LedgerEvent).where(LedgerEvent.type == "seb_check_failed"))
        )
    assert [f.payload["code"] for f in failures] == [
        "seb_required", "seb_key_invalid", "seb_key_invalid", "seb_required", "seb_required",
        "seb_required",
    ]  # fmt: skip
