import pytest

from delivery_service.domain.errors import InvalidResponse
from delivery_service.domain.interactions import ItemContent, interaction_for, score_attempt


def item(ident: str, correct: list[str], max_choices: int = 1, points: float = 1) -> ItemContent:
    return ItemContent(
        item_id=f"id-{ident}",
        identifier=ident,
        type="choice",
        body={
            "prompt": "?",
            "choices": [{"identifier": c, "text": c} for c in "ABCD"],
            "max_choices": max_choices,
        },
        scoring={"correct": correct, "points": points},
    )


def test_a_single_identifier_is_stored_as_a_sorted_list() -> None:
    single = item("q1", ["B"])
    assert interaction_for(single).normalize(single, "B") == ["B"]


def test_multiple_choice_is_deduplicated_and_sorted() -> None:
    multi = item("q2", ["A", "C"], max_choices=0)
    assert interaction_for(multi).normalize(multi, ["C", "A", "C"]) == ["A", "C"]


@pytest.mark.parametrize("raw", [None, []])
def test_empty_response_clears(raw: object) -> None:
    single = item("q1", ["B"])
    assert interaction_for(single).normalize(single, raw) is None


@pytest.mark.parametrize(
    ("raw", "match"),
    [(["Z"], "unknown choice"), (["A", "B"], "at most 1"), (42, "identifier"), ([1], "identifier")],
)
def test_invalid_responses_are_refused(raw: object, match: str) -> None:
    single = item("q1", ["B"])
    with pytest.raises(InvalidResponse, match=match):
        interaction_for(single).normalize(single, raw)


def test_scoring_is_all_or_nothing_per_item_and_sums_points() -> None:
    items = [item("q1", ["B"], points=2), item("q2", ["A", "C"], max_choices=0), item("q3", ["D"])]
    responses = {"id-q1": ["B"], "id-q2": ["A"], "id-q3": None}
    assert score_attempt(items, responses) == (2.0, 4.0)
    assert score_attempt(items, {"id-q1": ["B"], "id-q2": ["A", "C"], "id-q3": ["D"]}) == (4.0, 4.0)
