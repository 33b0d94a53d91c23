"""Adaptive sections delivered one item at a time over the real API, on both deployments: the
candidate only ever holds the items already chosen, each answer decides the next item
server-side, and the engine replayed from the stored log gives the same decisions."""

from __future__ import annotations

import uuid
from typing import Any

from delivery_service.storage.models import Attempt
from tests.integration.conftest import World
from tests.support import FOR_HOMEROOM

CHOICES = [{"identifier": c, "text": f"Choice {c}"} for c in "ABCD"]


def calibrated(n: int) -> dict[str, Any]:
    b = -2.0 + 4.0 * n / 29
    return {"identifier": f"cat{n:02d}", "type": "choice", "prompt": f"Item {n}",
            "choices": CHOICES, "correct": ["B"], "tags": ["cat", f"b:{b:.2f}"],
            "irt": {"a": 1.0 + (n % 3) * 0.3, "b": round(b, 3)}}  # fmt: skip


FINAL = {"identifier": "final", "type": "choice", "prompt": "Last", "choices": CHOICES,
         "correct": ["A"]}  # fmt: skip


async def bank(world: World) -> dict[str, float]:
    difficulty = {}
    for n in range(30):
        item = calibrated(n)
        await world.teacher.post("/items", item, expect=201)
        difficulty[item["identifier"]] = item["irt"]["b"]
    return difficulty


def blueprint(**adaptive: Any) -> dict[str, Any]:
    return {"sections": [
        {"identifier": "cat", "selection": {"mode": "adaptive", "tags": ["cat"]},
         "adaptive": {"min_items": 3, "max_items": 6, "se_target": 0.05} | adaptive},
        {"identifier": "end", "items": ["final"]},
    ]}  # fmt: skip


async def test_an_adaptive_section_chooses_each_item_after_the_last_answer(world: World) -> None:
    difficulty = await bank(world)
    nonlinear = await world.teacher.post("/tests", {
        **FOR_HOMEROOM,
        "title": "CAT", "time_limit_seconds": 600, "items": [FINAL], "blueprint": blueprint(),
    }, expect=422)  # fmt: skip
    assert nonlinear["error"]["code"] == "adaptive_needs_linear"
    short = await world.teacher.post("/tests", {
        **FOR_HOMEROOM,
        "title": "CAT", "time_limit_seconds": 600, "navigation_mode": "linear", "items": [FINAL],
        "blueprint": blueprint(min_items=40, max_items=40),
    }, expect=422)  # fmt: skip
    assert short["error"]["code"] == "blueprint_unsatisfiable"
    test = await world.teacher.post("/tests", {
        **FOR_HOMEROOM,
        "title": "CAT", "time_limit_seconds": 600, "navigation_mode": "linear", "items": [FINAL],
        "blueprint": blueprint(),
    }, expect=201)  # fmt: skip

    attempt = await world.student.post("/attempts", {"test_id": test["id"]}, expect=201)
    aid = attempt["id"]
    view = await world.student.post(f"/attempts/{aid}/start")
    assert [i["item_id"] for i in view["items"]][1:] == ["final"]  # one CAT item, chosen
    seen: list[str] = []
    seq = 0
    current = await world.student.get(f"/attempts/{aid}/current")
    assert current["total_items"] == 7  # at most 6 adaptive items and the last one
    while current["item"]["section"] == "cat":
        item = current["item"]["item_id"]
        assert item.startswith("cat")
        assert item not in seen
        assert "irt" not in str(current)
        assert "correct" not in str(current)
        seen.append(item)
        seq += 1
        # A candidate of ability 0.3: right on everything easier than that.
        await world.student.post(f"/attempts/{aid}/answers", {
            "item_id": item, "response": "B" if difficulty[item] < 0.3 else "C",
            "client_seq": seq})  # fmt: skip
        current = await world.student.post(f"/attempts/{aid}/navigate", {"to": "next"})
    assert len(seen) == 6
    assert current["item"]["item_id"] == "final"
    assert current["total_items"] == 7
    assert current["position"] == 6

    locked = await world.student.post(f"/attempts/{aid}/answers", {
        "item_id": seen[0], "response": "B", "client_seq": 99}, expect=409)  # fmt: skip
    assert locked["error"]["code"] == "item_locked"
    back = await world.student.post(f"/attempts/{aid}/navigate", {"to": "previous"}, expect=403)
    assert back["error"]["code"] == "navigation_forbidden"
    await world.student.post(f"/attempts/{aid}/submit")

    assert (await world.student.get(f"/attempts/{aid}/adaptive", expect=403))["error"][
        "code"
    ] == "forbidden"
    (audit,) = await world.teacher.get(f"/attempts/{aid}/adaptive")
    assert audit["consistent"] is True
    assert audit["stopped"] == "max_items"
    assert [s["delivered"] for s in audit["steps"]] == [*seen, None]
    assert [s["engine_choice"] for s in audit["steps"]] == [*seen, None]
    expected = [1 if difficulty[i] < 0.3 else 0 for i in seen]
    assert [s["score"] for s in audit["steps"][:-1]] == expected
    assert -1.5 < audit["theta"] < 2.0
    assert audit["se"] < 1.0
    review = await world.teacher.get(f"/attempts/{aid}/review")
    assert review["ability"]["cat"]["stopped"] == "max_items"
    assert review["result"]["score"] == float(sum(expected))

    # Tampering with the stored log is caught by the replay.
    async with world.sessions() as s, s.begin():
        row = await s.get(Attempt, uuid.UUID(aid))
        assert row is not None
        assert row.layout is not None
        layout = dict(row.layout)
        cat = dict(layout["adaptive"]["cat"])
        cat["log"] = [[i, 1 - score] for i, score in cat["log"]]
        layout["adaptive"] = {"cat": cat}
        row.layout = layout
    (tampered,) = await world.teacher.get(f"/attempts/{aid}/adaptive")
    assert tampered["consistent"] is False


async def test_an_adaptive_end_stops_on_its_standard_error_and_waits_for_submit(
    world: World,
) -> None:
    await bank(world)
    test = await world.teacher.post("/tests", {
        **FOR_HOMEROOM,
        "title": "CAT only", "time_limit_seconds": 600, "navigation_mode": "linear",
        "blueprint": {"sections": [{"identifier": "cat",
                                    "selection": {"mode": "adaptive", "tags": ["cat"]},
                                    "adaptive": {"min_items": 2, "max_items": 30,
                                                 "se_target": 0.75}}]},
    }, expect=201)  # fmt: skip
    attempt = await world.student.post("/attempts", {"test_id": test["id"]}, expect=201)
    aid = attempt["id"]
    await world.student.post(f"/attempts/{aid}/start")
    current = await world.student.get(f"/attempts/{aid}/current")
    for seq in range(1, 31):
        item = current["item"]["item_id"]
        await world.student.post(
            f"/attempts/{aid}/answers", {"item_id": item, "response": "B", "client_seq": seq}
        )
        moved = await world.student.post(f"/attempts/{aid}/navigate", {"to": "next"})
        if moved["item"]["item_id"] == item:
            break
        current = moved
    assert moved["locked"] is True
    assert moved["total_items"] == moved["position"] + 1 < 30
    (audit,) = await world.teacher.get(f"/attempts/{aid}/adaptive")
    assert audit["stopped"] == "se_target"
    assert audit["se"] <= 0.75
    assert audit["consistent"]
    done = await world.student.post(f"/attempts/{aid}/submit")
    assert done["answered"] == moved["total_items"]


async def test_submitting_on_an_answered_adaptive_item_counts_it_in_the_estimate(
    world: World,
) -> None:
    await bank(world)
    test = await world.teacher.post("/tests", {
        **FOR_HOMEROOM,
        "title": "CAT cut short", "time_limit_seconds": 600, "navigation_mode": "linear",
        "blueprint": {"sections": [{"identifier": "cat",
                                    "selection": {"mode": "adaptive", "tags": ["cat"]},
                                    "adaptive": {"min_items": 5, "max_items": 10,
                                                 "se_target": 0.05}}]},
    }, expect=201)  # fmt: skip
    attempt = await world.student.post("/attempts", {"test_id": test["id"]}, expect=201)
    aid = attempt["id"]
    await world.student.post(f"/attempts/{aid}/start")
    current = await world.student.get(f"/attempts/{aid}/current")
    given = []
    for seq in range(1, 4):
        item = current["item"]["item_id"]
        given.append(item)
        await world.student.post(
            f"/attempts/{aid}/answers", {"item_id": item, "response": "B", "client_seq": seq}
        )
        if seq < 3:
            current = await world.student.post(f"/attempts/{aid}/navigate", {"to": "next"})
    await world.student.post(f"/attempts/{aid}/submit")  # on the third, answered
    (audit,) = await world.teacher.get(f"/attempts/{aid}/adaptive")
    assert audit["stopped"] == "ended"
    assert audit["consistent"] is True
    assert [s["delivered"] for s in audit["steps"]] == [*given, None]
    assert [s["score"] for s in audit["steps"]] == [1, 1, 1, None]
    # Three right answers: the estimate moved up from the prior and narrowed.
    assert audit["steps"][-1]["theta"] == audit["theta"]
    assert audit["theta"] > audit["steps"][2]["theta"] > 0
    assert audit["se"] < audit["steps"][2]["se"]
