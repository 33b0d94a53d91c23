"""Every interaction type: what is accepted, how it is stored, how it scores."""

from typing import Any

import pytest

from test_assembly.interactions import ResponseError, interaction_for
from test_assembly.model import ItemDefinition
from test_assembly.scoring import ScoringRules, combine_attempts, max_score, score_form, score_item

CHOICES = [{"identifier": c, "text": f"choice {c}"} for c in "ABCD"]

DEFINITIONS: dict[str, dict[str, Any]] = {
    "single": {"type": "choice", "choices": CHOICES, "correct": ["B"], "points": 2},
    "multi": {"type": "choice", "choices": CHOICES, "correct": ["C", "A"]},
    "inline": {"type": "inline_choice", "choices": CHOICES[:3], "correct": "C"},
    "text": {"type": "text_entry", "correct": ["Paris", "paris france"]},
    "text_cs": {"type": "text_entry", "correct": ["NaCl"], "case_sensitive": True},
    "numeric": {"type": "numeric", "correct": 3.14, "tolerance": 0.01},
    "numeric_rel": {"type": "numeric", "correct": 200, "tolerance": 5,
                    "tolerance_mode": "relative"},
    "essay": {"type": "extended_text", "points": 10},
    "order": {"type": "order", "choices": CHOICES[:3], "correct": ["C", "A", "B"]},
    "match": {
        "type": "match",
        "sources": [{"identifier": "fr", "text": "France"},
                    {"identifier": "de", "text": "Germany"}],
        "targets": [{"identifier": "paris", "text": "Paris"},
                    {"identifier": "berlin", "text": "Berlin"},
                    {"identifier": "rome", "text": "Rome"}],
        "correct": [["fr", "paris"], ["de", "berlin"]],
        "method": "map_response",
        "mapping": {"entries": {"fr paris": 1, "de berlin": 1, "fr rome": -1}, "lower_bound": -1},
    },
    "gap": {
        "type": "gap_match",
        "prompt": "The {G1} sat on the {G2}.",
        "gap_texts": [{"identifier": "cat", "text": "cat"}, {"identifier": "mat", "text": "mat"}],
        "gaps": ["G1", "G2"],
        "correct": [["mat", "G2"], ["cat", "G1"]],
    },
}  # fmt: skip


def content(name: str) -> Any:
    spec = {"identifier": name, "prompt": "?"} | DEFINITIONS[name]
    return ItemDefinition.model_validate(spec).content(f"row-{name}")


def normalize(name: str, raw: Any) -> Any:
    item = content(name)
    return interaction_for(item).normalize(item, raw)


def score(name: str, raw: Any, **rules: Any) -> float | None:
    item = content(name)
    return score_item(item, interaction_for(item).normalize(item, raw), **rules).score


@pytest.mark.parametrize(
    ("name", "raw", "stored"),
    [
        ("single", "B", ["B"]),
        ("multi", ["C", "A", "C"], ["A", "C"]),
        ("inline", ["C"], "C"),
        ("text", "  paris   FRANCE ", "paris FRANCE"),
        ("numeric", "3,141", 3.141),
        ("numeric", 3, 3.0),
        ("essay", "An essay.\n\n", "An essay."),
        ("order", ["C", "A", "B"], ["C", "A", "B"]),
        ("match", [["fr", "paris"], ["de", "berlin"]], [["de", "berlin"], ["fr", "paris"]]),
        ("gap", [("mat", "G2"), ("cat", "G1")], [["cat", "G1"], ["mat", "G2"]]),
        ("text", "   ", None),
        ("single", None, None),
        ("multi", [], None),
        ("numeric", "", None),
    ],
)
def test_responses_are_stored_in_one_canonical_form(name: str, raw: Any, stored: Any) -> None:
    assert normalize(name, raw) == stored


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("single", ["A", "B"], "at most 1"),
        ("single", ["Z"], "unknown choice"),
        ("inline", 7, "one choice identifier"),
        ("text", ["Paris"], "string"),
        ("text", "x" * 1001, "longer than 1000"),
        ("numeric", "three", "number"),
        ("numeric", float("nan"), "finite"),
        ("numeric", True, "number"),
        ("order", ["C", "A"], "every choice exactly once"),
        ("order", ["C", "A", "A"], "every choice exactly once"),
        ("match", [["fr", "paris"], ["fr", "berlin"]], "at most 1 time"),
        ("match", [["fr"]], "pairs"),
        ("match", [["xx", "paris"]], "unknown choice"),
        ("gap", [["cat", "G1"], ["mat", "G1"]], "G1 may be used at most 1"),
    ],
)
def test_invalid_responses_are_refused_with_a_reason(name: str, raw: Any, message: str) -> None:
    with pytest.raises(ResponseError, match=message) as refused:
        normalize(name, raw)
    assert refused.value.details.get("item_id", name) == name


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("single", "B", 2.0),
        ("single", "A", 0.0),
        ("multi", ["A", "C"], 1.0),
        ("multi", ["A"], 0.0),
        ("inline", "C", 1.0),
        ("text", "PARIS", 1.0),
        ("text", "Paris France", 1.0),
        ("text", "Lyon", 0.0),
        ("text_cs", "NaCl", 1.0),
        ("text_cs", "nacl", 0.0),
        ("numeric", 3.1499, 1.0),
        ("numeric", 3.1501, 0.0),
        ("numeric_rel", 209.9, 1.0),
        ("numeric_rel", 189, 0.0),
        ("order", ["C", "A", "B"], 1.0),
        ("order", ["A", "C", "B"], 0.0),
        ("match", [["fr", "paris"], ["de", "berlin"]], 2.0),
        ("match", [["fr", "paris"]], 1.0),
        ("match", [["fr", "rome"]], 0.0),
        ("gap", [["cat", "G1"], ["mat", "G2"]], 1.0),
        ("gap", [["mat", "G1"], ["cat", "G2"]], 0.0),
        ("single", None, 0.0),
    ],
)
def test_scoring_table(name: str, raw: Any, expected: float) -> None:
    assert score(name, raw) == pytest.approx(expected)


def test_negative_marking_costs_the_penalty_only_when_on_and_only_for_wrong_answers() -> None:
    DEFINITIONS["penalised"] = DEFINITIONS["single"] | {"penalty": 0.5}
    try:
        assert score("penalised", "A") == 0.0
        assert score("penalised", "A", negative_marking=True) == -0.5
        assert score("penalised", "B", negative_marking=True) == 2.0
        assert score("penalised", None, negative_marking=True) == 0.0
    finally:
        del DEFINITIONS["penalised"]


def test_a_mapping_is_bounded_and_floors_at_zero_without_negative_marking() -> None:
    assert score("match", [["fr", "rome"]], negative_marking=True) == -1.0
    assert score("match", [["fr", "rome"], ["de", "berlin"]], negative_marking=True) == 0.0
    assert max_score(content("match")) == 2.0
    DEFINITIONS["capped"] = DEFINITIONS["match"] | {
        "mapping": {"entries": {"fr paris": 1, "de berlin": 1}, "upper_bound": 1.5}
    }
    try:
        assert score("capped", [["fr", "paris"], ["de", "berlin"]]) == 1.5
        assert max_score(content("capped")) == 1.5
    finally:
        del DEFINITIONS["capped"]


def test_text_mappings_follow_the_items_case_rule() -> None:
    DEFINITIONS["mapped_text"] = {
        "type": "text_entry",
        "correct": ["Paris"],
        "method": "map_response",
        "mapping": {"entries": {"Paris": 2, "paris france": 1.5}, "default": 0},
    }
    try:
        assert score("mapped_text", "PARIS") == 2.0
        assert score("mapped_text", "Paris,  France".replace(",", "")) == 1.5
        assert score("mapped_text", "Rome") == 0.0
    finally:
        del DEFINITIONS["mapped_text"]


def test_an_essay_waits_for_its_grade() -> None:
    essay = content("essay")
    assert score_item(essay, "words").score is None
    assert score_item(essay, "words", grade=7.5).score == 7.5
    assert score_item(essay, None).score == 0.0
    assert score_item(essay, "words").correct is None


def test_sections_total_pass_mark_and_pending_grades() -> None:
    single, essay, text = content("single"), content("essay"), content("text")
    sections = [("s1", [single, text]), ("s2", [essay])]
    responses = {single.item_id: ["B"], text.item_id: "lyon", essay.item_id: "words"}
    pending = score_form(sections, responses, ScoringRules(pass_mark=0.5))
    assert (pending.score, pending.max_score, pending.pending) == (2.0, 13.0, 1)
    assert pending.passed is None
    assert not pending.final
    graded = score_form(sections, responses, ScoringRules(pass_mark=0.5, grades={essay.item_id: 5}))
    assert [(s.identifier, s.score, s.max_score) for s in graded.sections] == [
        ("s1", 2.0, 3.0),
        ("s2", 5.0, 10.0),
    ]
    assert graded.final
    assert graded.passed is True
    failed = score_form(sections, responses, ScoringRules(pass_mark=0.6, grades={essay.item_id: 5}))
    assert failed.passed is False


@pytest.mark.parametrize(
    ("policy", "expected"), [("highest", 9.0), ("last", 4.0), ("first", 5.0), ("average", 6.0)]
)
def test_scoring_across_attempts(policy: Any, expected: float) -> None:
    assert combine_attempts(policy, [(3, 4.0), (1, 5.0), (2, 9.0)]) == expected
    assert combine_attempts(policy, []) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "choice", "choices": CHOICES, "correct": ["Z"]}, "unknown choice"),
        ({"type": "choice", "correct": ["A"]}, "needs choices"),
        ({"type": "order", "choices": CHOICES, "correct": ["A"]}, "every choice"),
        ({"type": "extended_text", "method": "match_correct"}, "manually"),
        ({"type": "text_entry", "method": "map_response"}, "needs a mapping"),
        ({"type": "numeric"}, "needs a correct response"),
        ({"type": "choice", "choices": CHOICES * 2, "correct": ["A"]}, "unique"),
    ],
)
def test_inconsistent_items_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ItemDefinition.model_validate({"identifier": "bad", "prompt": "?"} | spec)


def test_body_and_scoring_split_and_join_again() -> None:
    definition = ItemDefinition.model_validate(
        {"identifier": "m", "prompt": "?", "tags": ["topic:geo"], "irt": {"a": 1.2, "b": 0.3}}
        | DEFINITIONS["match"]
    )
    body, rules = definition.body(), definition.scoring()
    assert "correct" not in body
    assert "mapping" not in body
    assert "sources" in body
    assert "correct" in rules
    again = ItemDefinition.from_parts(
        identifier="m", type="match", body=body, scoring=rules, tags=["topic:geo"],
        irt={"a": 1.2, "b": 0.3, "c": 0.0},
    )  # fmt: skip
    assert again == definition
