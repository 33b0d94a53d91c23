"""The item bank, blueprints and QTI over the real API, on both deployments: versions pinned by
attempts, forms drawn from a stored seed, every interaction scored server-side, packages in and
out (and refused without a trace)."""

from __future__ import annotations

import io
import uuid
import zipfile
from typing import Any

from sqlalchemy import func, select

from delivery_service.storage import models
from delivery_service.storage.models import Attempt, BankItem, Item, LedgerEvent
from test_assembly.assembly import Candidate, Form, assemble
from test_assembly.model import Blueprint
from test_assembly.qti import export_package, import_package
from tests.integration.conftest import World
from tests.integration.test_cli import examserver
from tests.support import FOR_HOMEROOM

CHOICES = [{"identifier": c, "text": f"Choice {c}"} for c in "ABCD"]


def choice(ident: str, *tags: str, prompt: str = "Pick B", shuffle: bool = False) -> dict[str, Any]:
    return {"identifier": ident, "type": "choice", "prompt": prompt, "choices": CHOICES,
            "correct": ["B"], "tags": list(tags), "shuffle": shuffle}  # fmt: skip


async def add_items(world: World, *items: dict[str, Any]) -> None:
    for item in items:
        await world.teacher.post("/items", item, expect=201)


async def take(world: World, test_id: str, student: Any = None) -> dict[str, Any]:
    who = student or world.student
    attempt = await who.post("/attempts", {"test_id": test_id}, expect=201)
    return dict(await who.post(f"/attempts/{attempt['id']}/start"))


async def test_editing_a_bank_item_never_changes_an_attempt_that_has_it(world: World) -> None:
    await add_items(world, choice("bank-q1", "topic:a", prompt="Version one"))
    test = await world.teacher.post("/tests", {
        **FOR_HOMEROOM,
        "title": "Bank test", "time_limit_seconds": 600,
        "blueprint": {"sections": [{"identifier": "s1", "items": ["bank-q1"]}]},
    }, expect=201)  # fmt: skip
    first = await take(world, test["id"])
    edited = dict(choice("bank-q1", "topic:a", prompt="Version two"))
    updated = await world.teacher.http.put(
        "/items/bank-q1", json={"item": edited, "reason": "typo"}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    current = await world.student.get(f"/attempts/{first['id']}/current")
    assert current["item"]["prompt"] == "Version one"
    second = await take(world, test["id"], world.other)
    assert (await world.other.get(f"/attempts/{second['id']}/current"))["item"]["prompt"] == (
        "Version two"
    )
    old = await world.teacher.get("/items/bank-q1?version=1")
    assert old["item"]["prompt"] == "Version one"
    async with world.sessions() as s:
        history = list(
            await s.scalars(
                select(LedgerEvent.type).where(LedgerEvent.chain.like("item:%")).order_by(
                    LedgerEvent.id)
            )
        )  # fmt: skip
    assert history == ["item_created", "item_updated"]
    # Students cannot read the bank (it holds correct answers).
    assert (await world.student.get("/items", expect=403))["error"]["code"] == "forbidden"


async def test_forms_are_drawn_from_a_stored_seed_and_rebuild_exactly(world: World) -> None:
    await add_items(
        world, *[choice(f"pool-{n}", "topic:pool", shuffle=True) for n in range(8)],
        choice("retired-one", "topic:pool"),
    )  # fmt: skip
    await world.teacher.post("/items/retired-one/retire", {"reason": "leaked"})
    test = await world.teacher.post("/tests", {
        **FOR_HOMEROOM,
        "title": "Drawn", "time_limit_seconds": 600,
        "items": [choice("own-1")],
        "blueprint": {"sections": [
            {"identifier": "intro", "items": ["own-1"]},
            {"identifier": "drawn", "selection": {"mode": "pool", "count": 3,
                                                  "tags": ["topic:pool"]},
             "ordering": {"shuffle_items": True, "shuffle_choices": True}},
        ]},
    }, expect=201)  # fmt: skip
    assert test["item_count"] == 4
    started = await take(world, test["id"])
    async with world.sessions() as s:
        attempt = await s.get(Attempt, uuid.UUID(started["id"]))
        assert attempt is not None
        assert attempt.seed is not None
        assert attempt.layout is not None
        rows = {r.identifier: r for r in await s.scalars(select(Item))}
    drawn = attempt.layout["sections"][1]["items"]
    assert len(drawn) == 3
    assert "retired-one" not in drawn
    # The audit: the stored seed and blueprint give back exactly the stored form.
    pool = {
        k: Candidate(k, frozenset(r.tags or []), tuple("ABCD"), bool(r.body.get("shuffle")))
        for k, r in rows.items()
        if k != "retired-one" and (k.startswith("pool-") or k == "own-1")
    }
    rebuilt = assemble(Blueprint.model_validate(test["blueprint"]), pool, attempt.seed)
    stored = Form.from_json(attempt.layout)
    assert rebuilt == stored
    # The candidate sees the drawn items with their choices in this attempt's order.
    await world.student.post(f"/attempts/{started['id']}/navigate", {"to": 1})
    current = await world.student.get(f"/attempts/{started['id']}/current")
    assert current["item"]["item_id"] == drawn[0]
    assert current["item"]["section"] == "drawn"
    shown = [c["identifier"] for c in current["item"]["choices"]]
    assert shown == stored.choice_order[drawn[0]]


async def test_a_blueprint_the_bank_cannot_fill_is_refused(world: World) -> None:
    refused = await world.teacher.post("/tests", {
        **FOR_HOMEROOM,
        "title": "Too big", "time_limit_seconds": 600,
        "blueprint": {"sections": [{"identifier": "s", "selection": {
            "mode": "pool", "count": 5, "tags": ["topic:none"]}}]},
    }, expect=422)  # fmt: skip
    assert refused["error"]["code"] == "blueprint_unsatisfiable"


EVERY_TYPE: list[dict[str, Any]] = [
    {"identifier": "c", "type": "choice", "prompt": "Pick B", "choices": CHOICES,
     "correct": ["B"], "points": 2, "penalty": 1},
    {"identifier": "t", "type": "text_entry", "prompt": "Capital of Italy?",
     "correct": ["Rome", "Roma"]},
    {"identifier": "n", "type": "numeric", "prompt": "Pi?", "correct": 3.14, "tolerance": 0.01},
    {"identifier": "e", "type": "extended_text", "prompt": "Discuss.", "points": 5},
    {"identifier": "i", "type": "inline_choice", "prompt": "Ice is {}.",
     "choices": [{"identifier": "cold", "text": "cold"}, {"identifier": "hot", "text": "hot"}],
     "correct": "cold"},
    {"identifier": "o", "type": "order", "prompt": "Order", "choices": CHOICES[:3],
     "correct": ["C", "B", "A"]},
    {"identifier": "m", "type": "match", "prompt": "Match",
     "sources": [{"identifier": "x", "text": "x"}, {"identifier": "y", "text": "y"}],
     "targets": [{"identifier": "one", "text": "1"}, {"identifier": "two", "text": "2"}],
     "correct": [["x", "one"], ["y", "two"]], "method": "map_response",
     "mapping": {"entries": {"x one": 1, "y two": 1}}},
    {"identifier": "g", "type": "gap_match", "prompt": "The {G1} barks.",
     "gap_texts": [{"identifier": "dog", "text": "dog"}, {"identifier": "cat", "text": "cat"}],
     "gaps": ["G1"], "correct": [["dog", "G1"]]},
]  # fmt: skip


async def test_every_interaction_is_delivered_validated_and_scored(world: World) -> None:
    test = await world.teacher.post("/tests", {
        **FOR_HOMEROOM,
        "title": "Every type", "time_limit_seconds": 600, "items": EVERY_TYPE,
        "policies": {"negative_marking": True, "pass_mark": 0.5},
    }, expect=201)  # fmt: skip
    started = await take(world, test["id"])
    aid = started["id"]
    current = await world.student.get(f"/attempts/{aid}/current")
    assert "correct" not in str(current)
    answers: list[tuple[str, Any]] = [
        ("c", "A"),  # wrong: costs the penalty of 1
        ("t", "  roma "),
        ("n", "3,145"),
        ("e", "An essay."),
        ("i", "cold"),
        ("o", ["C", "B", "A"]),
        ("m", [["x", "one"]]),  # half the mapping
        ("g", [["dog", "G1"]]),
    ]
    for seq, (item, response) in enumerate(answers, start=1):
        await world.student.post(
            f"/attempts/{aid}/answers", {"item_id": item, "response": response, "client_seq": seq}
        )
    bad = await world.student.post(
        f"/attempts/{aid}/answers",
        {"item_id": "o", "response": ["C", "B"], "client_seq": 99},
        expect=422,
    )
    assert bad["error"]["code"] == "invalid_response"
    assert bad["error"]["details"]["item_id"] == "o"
    await world.student.post(f"/attempts/{aid}/submit")
    graded = await world.teacher.get(f"/attempts/{aid}")
    # -1 + 1 + 1 + (essay pending) + 1 + 1 + 1 + 1 = 5 of 2+1+1+5+1+1+2+1 = 14
    assert (graded["score"], graded["max_score"]) == (5.0, 14.0)
    async with world.sessions() as s:
        attempt = await s.get(Attempt, uuid.UUID(aid))
        assert attempt is not None
        assert attempt.passed is None  # the essay is not graded yet


def cli_env(world: World) -> dict[str, str]:
    return {
        "EXAMSERVER_DATABASE_URL": world.settings.database_url,
        "EXAMSERVER_LEDGER_KEY": world.settings.ledger_key,
        "EXAMSERVER_ENVIRONMENT": "test",
    }


async def test_qti_in_and_out_over_rest_and_the_cli(world: World, tmp_path: Any) -> None:
    from tests.unit.test_qti import example_test

    source = example_test(blueprint={"sections": [
        {"identifier": "a", "items": ["c1", "t1", "n1", "o1"]},
        {"identifier": "b", "items": ["m1", "g1", "i1"], "selection": {"mode": "random",
                                                                      "count": 2}},
    ]})  # fmt: skip
    data = export_package(source)
    reply = await world.teacher.http.post(
        "/qti/import", content=data, headers={"Content-Type": "application/zip"}
    )
    assert reply.status_code == 201, reply.text
    imported = reply.json()
    assert imported["problems"] == []
    assert set(imported["items"].values()) == {"created"}
    test_id = imported["test_id"]
    assert (await world.teacher.get(f"/tests/{test_id}"))["assigned_to"] == []  # staff only
    await world.teacher.put(f"/tests/{test_id}/availability", FOR_HOMEROOM)
    started = await take(world, test_id)
    assert started["total_items"] == 6
    exported = await world.teacher.http.get(f"/tests/{test_id}/qti")
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/zip"
    again = import_package(exported.content)
    assert again.test is not None
    assert again.test.blueprint == source.blueprint
    assert sorted(i.identifier for i in again.items) == sorted(
        i.identifier for i in source.items if i.identifier in again.test.blueprint.referenced()
    )
    # Importing the same package again changes nothing in the bank.
    second = await world.teacher.http.post("/qti/import", content=data)
    assert set(second.json()["items"].values()) == {"unchanged"}
    # The CLI does the same against the same database.
    env = cli_env(world)
    written = tmp_path / "out.zip"
    out = examserver("export-qti", test_id, str(written), env=env)
    assert out.returncode == 0, out.stderr
    assert written.read_bytes() == exported.content


async def test_a_bad_package_is_refused_and_changes_nothing(world: World) -> None:
    async with world.sessions() as s:
        before = (await s.scalar(select(func.count()).select_from(BankItem)),
                  await s.scalar(select(func.count()).select_from(Item)))  # fmt: skip
    for data, code in (
        (b"not a zip", "bad_zip"),
        (zip_of({"imsmanifest.xml": "<manifest"}), "broken_xml"),
        (zip_of({"imsmanifest.xml": '<!DOCTYPE x [<!ENTITY a "a">]><manifest/>'}),
         "forbidden_dtd"),
    ):  # fmt: skip
        reply = await world.teacher.http.post("/qti/import", content=data)
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"]["code"] == code
    from tests.unit.test_qti import package_v3, zipped

    partial = await world.teacher.http.post(
        "/qti/import", params={"all_or_nothing": "true"}, content=zipped(package_v3())
    )
    assert partial.status_code == 422
    assert partial.json()["error"]["code"] == "import_incomplete"
    async with world.sessions() as s:
        after = (await s.scalar(select(func.count()).select_from(BankItem)),
                 await s.scalar(select(func.count()).select_from(Item)))  # fmt: skip
    assert after == before
    student = await world.student.http.post("/qti/import", content=zipped(package_v3()))
    assert student.status_code == 403


def zip_of(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


async def test_the_cli_imports_a_package(world: World, tmp_path: Any) -> None:
    from tests.unit.test_qti import package_v3, zipped

    path = tmp_path / "geo.zip"
    path.write_bytes(zipped(package_v3()))
    env = cli_env(world)
    done = examserver("import-qti", str(path), "--as", "teacher", env=env)
    assert done.returncode == 0, done.stderr
    assert "item capital: created" in done.stdout
    assert "skipped items/drawing.xml drawing" in done.stdout
    refused = examserver("import-qti", str(path), "--all-or-nothing", env=env)
    assert refused.returncode == 1
    assert "import_incomplete" in refused.stderr


async def test_the_bank_lists_by_tag_state_and_type_and_guards_identifiers(world: World) -> None:
    await add_items(
        world, choice("alg-1", "topic:algebra", "difficulty:easy"),
        choice("alg-2", "topic:algebra", "difficulty:hard"), choice("geo-1", "topic:geometry"),
        EVERY_TYPE[1] | {"identifier": "txt-1", "tags": ["topic:algebra"]},
    )  # fmt: skip
    dup = await world.teacher.post("/items", choice("alg-1"), expect=409)
    assert dup["error"]["code"] == "item_exists"
    renamed = await world.teacher.http.put("/items/alg-1", json={"item": choice("other")})
    assert renamed.status_code == 409
    assert renamed.json()["error"]["code"] == "identifier_mismatch"
    await world.teacher.post("/items/alg-2/retire", {"reason": "too hard"})

    async def listed(query: str) -> list[str]:
        return [i["identifier"] for i in await world.teacher.get(f"/items{query}")]

    assert await listed("?tag=topic:algebra") == ["alg-1", "txt-1"]
    assert await listed("?tag=topic:algebra&tag=difficulty:easy") == ["alg-1"]
    assert await listed("?tag=topic:algebra&state=all") == ["alg-1", "alg-2", "txt-1"]
    assert await listed("?state=retired") == ["alg-2"]
    assert await listed("?type=text_entry") == ["txt-1"]
    missing = await world.teacher.get("/items/nope", expect=404)
    assert missing["error"]["code"] == "item_not_found"


async def test_a_package_whose_test_the_server_refuses_still_imports_its_items(
    world: World,
) -> None:
    """An adaptive section needs linear navigation: in a nonlinear package the test is reported
    as a problem and its calibrated items still reach the bank (unless all-or-nothing)."""
    from test_assembly.model import TestDefinition
    from tests.integration.test_adaptive_delivery import FINAL, blueprint, calibrated

    def package(navigation: str) -> bytes:
        return export_package(TestDefinition.model_validate({
            "identifier": "cat-test", "title": "CAT", "time_limit_seconds": 600,
            "navigation_mode": navigation, "blueprint": blueprint(),
            "items": [calibrated(n) for n in range(10)] + [FINAL],
        }))  # fmt: skip

    async def bank_size() -> int:
        async with world.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(BankItem)) or 0)

    refused = await world.teacher.http.post(
        "/qti/import", params={"all_or_nothing": "true"}, content=package("nonlinear")
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "adaptive_needs_linear"
    assert await bank_size() == 0

    reply = await world.teacher.http.post("/qti/import", content=package("nonlinear"))
    assert reply.status_code == 201, reply.text
    imported = reply.json()
    assert imported["test_id"] is None
    [problem] = imported["problems"]
    assert problem["identifier"] == "cat-test"
    assert problem["file"].endswith(".xml")
    assert problem["reason"].startswith("test not imported (adaptive_needs_linear)")
    assert len(imported["items"]) == 11
    assert set(imported["items"].values()) == {"created"}
    assert await bank_size() == 11
    async with world.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(LedgerEvent).where(
            LedgerEvent.type == "test_imported")) == 0  # fmt: skip
        assert await s.scalar(select(func.count()).select_from(models.Test)) == 0

    # The same test, linear: it imports over the items already there and delivers adaptively.
    linear = await world.teacher.http.post("/qti/import", content=package("linear"))
    assert linear.status_code == 201, linear.text
    assert linear.json()["problems"] == []
    assert set(linear.json()["items"].values()) == {"unchanged"}
    await world.teacher.put(f"/tests/{linear.json()['test_id']}/availability", FOR_HOMEROOM)
    started = await take(world, linear.json()["test_id"])
    assert started["items"][0]["item_id"].startswith("cat")
    assert started["items"][-1]["item_id"] == "final"
