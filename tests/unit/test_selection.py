"""Selection and ordering: uniform (chi-square), reproducible from the seed, and honest about
what the bank cannot supply."""

import hashlib
import itertools
from collections import Counter
from typing import Any

import pytest

from test_assembly.assembly import AssemblyError, Candidate, Form, assemble
from test_assembly.model import Blueprint
from test_assembly.rng import Stream, new_seed

# Upper 0.1% points of the chi-square distribution: a fair draw fails one run in a thousand
# (the seeds below are fixed, so the run is deterministic; a biased shuffle fails always).
CHI2_999 = {3: 16.27, 5: 20.52, 9: 27.88, 23: 49.73}


def seeds(n: int, label: str = "x") -> list[str]:
    return [hashlib.sha256(f"{label}{i}".encode()).hexdigest() for i in range(n)]


def chi_square(counts: Counter[Any], categories: int, draws: int) -> float:
    expected = draws / categories
    assert len(counts) <= categories
    observed = list(counts.values()) + [0] * (categories - len(counts))
    return sum((o - expected) ** 2 / expected for o in observed)


def bank(n: int, **tags: list[str]) -> dict[str, Candidate]:
    items = {}
    for i in range(n):
        ident = f"i{i:02d}"
        item_tags = frozenset(t for t, members in tags.items() for m in members if m == ident)
        items[ident] = Candidate(ident, item_tags, choices=("A", "B", "C", "D"), shuffle=True)
    return items


def blueprint(*sections: dict[str, Any], shuffle_sections: bool = False) -> Blueprint:
    return Blueprint.model_validate(
        {"sections": list(sections), "shuffle_sections": shuffle_sections}
    )


def test_every_permutation_of_a_shuffle_is_equally_likely() -> None:
    draws = 12_000
    counts = Counter(tuple(Stream(s, "t").shuffled("ABCD")) for s in seeds(draws))
    assert len(counts) == 24
    assert chi_square(counts, 24, draws) < CHI2_999[23]


def test_a_naive_shuffle_fails_the_same_check() -> None:
    """The check has teeth: swapping each place with any place is a classic biased shuffle."""
    draws = 12_000
    counts: Counter[tuple[str, ...]] = Counter()
    for s in seeds(draws):
        stream, out = Stream(s, "t"), list("ABCD")
        for i in range(4):
            j = stream.below(4)
            out[i], out[j] = out[j], out[i]
        counts[tuple(out)] += 1
    assert chi_square(counts, 24, draws) > CHI2_999[23]


def test_random_k_of_n_picks_every_subset_equally_often() -> None:
    draws = 10_000
    plan = blueprint(
        {"identifier": "s", "items": ["i00", "i01", "i02", "i03", "i04"],
         "selection": {"mode": "random", "count": 2}}
    )  # fmt: skip
    items = bank(5)
    counts = Counter(frozenset(assemble(plan, items, s).items) for s in seeds(draws))
    assert len(counts) == 10
    assert chi_square(counts, 10, draws) < CHI2_999[9]


def test_choice_shuffles_and_section_shuffles_are_uniform() -> None:
    draws = 6_000
    plan = blueprint(
        {"identifier": "a", "items": ["i00"], "ordering": {"shuffle_choices": True}},
        {"identifier": "b", "items": ["i01"]},
        {"identifier": "c", "items": ["i02"], "fixed_position": True},
        {"identifier": "d", "items": ["i03"]},
        shuffle_sections=True,
    )
    items = bank(4)
    forms = [assemble(plan, items, s) for s in seeds(draws, "sections")]
    firsts = Counter(f.choice_order["i00"][0] for f in forms)
    assert chi_square(firsts, 4, draws) < CHI2_999[3]
    orders = Counter(tuple(s.identifier for s in f.sections) for f in forms)
    assert all(order[2] == "c" for order in orders)  # the fixed section stays third
    assert len(orders) == 6
    assert chi_square(orders, 6, draws) < CHI2_999[5]


def test_the_seed_rebuilds_the_form_exactly_and_other_seeds_differ() -> None:
    plan = blueprint(
        {"identifier": "s1", "items": [f"i{i:02d}" for i in range(10)],
         "selection": {"mode": "random", "count": 5},
         "ordering": {"shuffle_items": True, "shuffle_choices": True}},
        {"identifier": "s2", "selection": {"mode": "pool", "count": 3, "tags": ["topic:b"]}},
    )  # fmt: skip
    items = bank(20, **{"topic:b": [f"i{i:02d}" for i in range(10, 20)]})
    seed = new_seed()
    form = assemble(plan, items, seed)
    assert Form.from_json(form.as_json()) == form
    assert assemble(plan, items, seed) == form
    assert len({tuple(assemble(plan, items, new_seed()).items) for _ in range(20)}) > 15
    assert all(i >= "i10" for i in form.sections[1].items)


def test_adding_to_one_section_leaves_the_others_draws_alone() -> None:
    one = {"identifier": "s1", "items": ["i00", "i01", "i02", "i03"],
           "selection": {"mode": "random", "count": 2}}  # fmt: skip
    two = {"identifier": "s2", "items": ["i04", "i05", "i06", "i07"],
           "selection": {"mode": "random", "count": 2},
           "ordering": {"shuffle_items": True}}  # fmt: skip
    items = bank(8)
    for seed in seeds(30):
        before = assemble(blueprint(one, two), items, seed)
        after = assemble(blueprint(one | {"selection": {"mode": "random", "count": 3}}, two),
                         items, seed)  # fmt: skip
        assert before.sections[1] == after.sections[1]


def test_stratified_selection_takes_each_strata_count() -> None:
    items = bank(
        12,
        **{"difficulty:easy": ["i00", "i01", "i02", "i03"],
           "difficulty:medium": ["i04", "i05", "i06", "i07"],
           "difficulty:hard": ["i08", "i09", "i10", "i11"]},
    )  # fmt: skip
    plan = blueprint(
        {"identifier": "s", "items": list(items),
         "selection": {"mode": "stratified", "strata": {"easy": 2, "medium": 1, "hard": 3}}}
    )  # fmt: skip
    for seed in seeds(50):
        picked = assemble(plan, items, seed).items
        levels = Counter(next(iter(items[i].tags)).split(":")[1] for i in picked)
        assert levels == {"easy": 2, "medium": 1, "hard": 3}


def test_a_later_section_never_repeats_an_item_from_an_earlier_one() -> None:
    items = bank(6, **{"topic:a": ["i00", "i01", "i02", "i03", "i04", "i05"]})
    plan = blueprint(
        {"identifier": "s1", "selection": {"mode": "pool", "count": 3, "tags": ["topic:a"]}},
        {"identifier": "s2", "selection": {"mode": "pool", "count": 3, "tags": ["topic:a"]}},
    )
    for seed in seeds(40):
        picked = assemble(plan, items, seed).items
        assert sorted(picked) == sorted(items)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"identifier": "s", "selection": {"mode": "pool", "count": 9, "tags": ["topic:a"]}},
         "draws 9 items from a pool of 2"),
        ({"identifier": "s", "items": ["i00", "nope"]}, "not available: nope"),
        ({"identifier": "s", "items": ["i00", "i01"],
          "selection": {"mode": "stratified", "strata": {"hard": 1}}}, "draws 1 hard items from 0"),
    ],
)  # fmt: skip
def test_a_bank_too_small_for_the_blueprint_is_refused(
    section: dict[str, Any], message: str
) -> None:
    items = bank(3, **{"topic:a": ["i00", "i01"]})
    with pytest.raises(AssemblyError, match=message):
        assemble(blueprint(section), items, new_seed())


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"identifier": "s"}, "lists its items"),
        ({"identifier": "s", "items": ["a"], "selection": {"mode": "random", "count": 2}},
         "more than the items"),
        ({"identifier": "s", "selection": {"mode": "pool", "count": 2}}, "needs tags"),
    ],
)  # fmt: skip
def test_blueprints_that_cannot_work_are_refused(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        blueprint(section)


def test_streams_are_unbiased_for_awkward_ranges() -> None:
    draws = 9_000
    counts = Counter(Stream(s, "b").below(3) for s in seeds(draws, "below"))
    assert chi_square(counts, 3, draws) < 13.82  # df 2
    assert list(itertools.islice((Stream("00" * 32, "x").below(1) for _ in range(3)), 3)) == [0] * 3
