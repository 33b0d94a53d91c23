"""The answer key never reaches a candidate.

A paper of every interaction type carries canaries where only its key holds them (accepted
text answers, a numeric answer, a mapping, IRT parameters); the candidate then takes it over
REST, the attempt socket and a proctored session's socket, and every payload they receive is
kept. No payload may hold a canary, nor any field of the key ("correct", "mapping", "scoring",
the form's secret seed, Safe Exam Browser keys).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.integration.conftest import World
from tests.support import FOR_HOMEROOM, Api, Socket

CANARIES = ("zeppelin-7f3c", "quasar-91bd", "7321.25", "8.8125", "0.4375")
FORBIDDEN_KEYS = {"correct", "mapping", "scoring", "seed", "irt", "seb_config_keys", "penalty"}
SEB_KEY = "a" * 64

ITEMS: list[dict[str, Any]] = [
    {"identifier": "choice", "type": "choice", "prompt": "Pick one.",
     "choices": [{"identifier": c, "text": f"Option {c}"} for c in "ABCD"], "correct": ["C"],
     "irt": {"a": 1.3, "b": 8.8125, "c": 0.4375}},
    {"identifier": "text", "type": "text_entry", "prompt": "Which airship?",
     "correct": ["zeppelin-7f3c", "quasar-91bd"]},
    {"identifier": "number", "type": "numeric", "prompt": "How much?", "correct": 7321.25,
     "tolerance": 0.5},
    {"identifier": "mapped", "type": "text_entry", "prompt": "Name a thing.",
     "method": "map_response",
     "mapping": {"entries": {"quasar-91bd": 2.0, "pulsar": 1.0}, "default": 0.0}},
    {"identifier": "order", "type": "order", "prompt": "Order them.",
     "choices": [{"identifier": c, "text": f"Step {c}"} for c in "XYZ"],
     "correct": ["Z", "X", "Y"]},
    {"identifier": "match", "type": "match", "prompt": "Match them.",
     "sources": [{"identifier": "s1", "text": "One"}, {"identifier": "s2", "text": "Two"}],
     "targets": [{"identifier": "t1", "text": "Uno"}, {"identifier": "t2", "text": "Dos"}],
     "correct": [["s1", "t1"], ["s2", "t2"]]},
    {"identifier": "essay", "type": "extended_text", "prompt": "Explain.", "points": 3},
]  # fmt: skip

WRONG = {"choice": "A", "text": "blimp", "number": 1, "mapped": "comet", "order": ["X", "Y", "Z"],
         "match": [["s1", "t2"]], "essay": "Because."}  # fmt: skip


def paper(**overrides: Any) -> dict[str, Any]:
    spec = {
        **FOR_HOMEROOM,
        "title": "Canary paper",
        "time_limit_seconds": 600,
        "navigation_mode": "nonlinear",
        "attempt_limit": 3,
        "items": ITEMS,
        "policies": {"feedback": "none", "review": "none"},
        "lockdown": {"require_seb": False, "seb_config_keys": [SEB_KEY]},
    }
    return spec | overrides


class Recorder:
    """Every payload the candidate receives."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, str]] = []
        self.sockets: list[Socket] = []

    def hook(self, api: Api) -> None:
        async def keep(response: httpx.Response) -> None:
            await response.aread()
            self.payloads.append((f"{response.request.method} {response.url.path}",
                                  response.text))  # fmt: skip

        api.http.event_hooks["response"].append(keep)

    def all(self) -> list[tuple[str, str]]:
        seen = [(f"ws {m['type']}", json.dumps(m)) for ws in self.sockets for m in ws.seen]
        return self.payloads + seen

    def problems(self) -> list[str]:
        found = []
        for where, text in self.all():
            for canary in CANARIES:
                if canary in text:
                    found.append(f"{where}: canary {canary}")
            try:
                body = json.loads(text)
            except ValueError:
                continue
            for key in keys_of(body) & FORBIDDEN_KEYS:
                found.append(f"{where}: key {key!r}")
        return found


def keys_of(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


async def take_over_rest_and_the_attempt_socket(
    recorder: Recorder, student: Api, test_id: str
) -> None:
    await student.get("/tests")
    await student.get(f"/tests/{test_id}")
    attempt = await student.post("/attempts", {"test_id": test_id}, expect=201)
    aid = attempt["id"]
    await student.post(f"/attempts/{aid}/start")
    seq = 0
    for position, item in enumerate(ITEMS[:3]):
        await student.post(f"/attempts/{aid}/navigate", {"to": position})
        await student.get(f"/attempts/{aid}/current")
        seq += 1
        await student.post(f"/attempts/{aid}/answers", {"item_id": item["identifier"],
                           "response": WRONG[item["identifier"]], "client_seq": seq})  # fmt: skip
    async with Socket.open(student.ws_url(aid, ticket=await student.ticket())) as ws:
        recorder.sockets.append(ws)
        await ws.until("attempt_state")
        for item in ITEMS[3:]:
            seq += 1
            await ws.request("get_question")
            await ws.request("submit_answer", {"item_id": item["identifier"],
                             "response": WRONG[item["identifier"]], "client_seq": seq})  # fmt: skip
            await ws.request("navigate", {"to": "next"})
        await ws.request("get_progress")
        await ws.request("ping", {"client_time": 1.0})
        await ws.request("flag", {"item_id": "essay", "flagged": True})
    for path in ("", "/progress", "/timer"):
        await student.get(f"/attempts/{aid}{path}")
    await student.post(f"/attempts/{aid}/submit")
    await student.get(f"/attempts/{aid}")
    await student.get(f"/attempts/{aid}/review", expect=403)
    await student.get(f"/tests/{test_id}/results", expect=None)
    await student.get("/attempts")


async def take_in_a_session(world: World, recorder: Recorder, student: Api, test_id: str) -> None:
    me = await student.get("/auth/me")
    klass = await world.teacher.post("/classes", {"name": "Canaries"}, expect=201)
    await world.teacher.post(f"/classes/{klass['id']}/students", {"user_id": me["id"]}, 201)
    soon = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()  # its waiting room may open
    session = await world.teacher.post("/sessions", {"class_id": klass["id"],
                                       "test_id": test_id, "title": "Canary sitting",
                                       "scheduled_at": soon}, expect=201)  # fmt: skip
    sid = session["id"]
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    await student.get("/sessions/my-sessions")
    base = world.base_url.replace("http://", "ws://")
    ticket = await student.ticket()
    async with Socket.open(f"{base}/api/v1/sessions/{sid}/ws?ticket={ticket}") as ws:
        recorder.sockets.append(ws)
        await ws.until("state_sync_response")
        await world.teacher.post(f"/sessions/{sid}/start")
        await ws.until("session_started")
        for seq, item in enumerate(ITEMS, start=1):
            await ws.request("answer_submitted", {"item_id": item["identifier"],
                             "response": WRONG[item["identifier"]], "client_seq": seq})  # fmt: skip
        await ws.request("state_sync_request")
        await world.teacher.post(f"/sessions/{sid}/complete", {"reason": "done"})
        await ws.until("session_completed")


async def test_no_payload_a_candidate_receives_holds_the_answer_key(world: World) -> None:
    recorder = Recorder()
    recorder.hook(world.student)
    self_paced = (await world.teacher.post("/tests", paper(), expect=201))["id"]
    await take_over_rest_and_the_attempt_socket(recorder, world.student, self_paced)
    proctored = (await world.teacher.post("/tests", paper(title="Canary sitting"), 201))["id"]
    await take_in_a_session(world, recorder, world.student, proctored)
    payloads = recorder.all()
    assert len(payloads) > 50, "the walk must have exercised the candidate's paths"
    assert recorder.problems() == []
    # The scan can see a key: the same paper read by its teacher holds every canary.
    staff_view = json.dumps(await world.teacher.get(f"/tests/{self_paced}"))
    assert all(canary in staff_view for canary in CANARIES[:3])
