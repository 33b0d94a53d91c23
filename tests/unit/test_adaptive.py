"""The adaptive engine on simulated banks: it recovers a simulated candidate's ability within
the error it reports, keeps content constraints, spreads exposure, and replays exactly."""

import hashlib
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_assembly.adaptive import (
    BankItem,
    Estimate,
    Params,
    eap,
    information,
    mle,
    next_step,
    probability,
    replay,
)
from test_assembly.model import AdaptiveConfig
from test_assembly.rng import Stream


def simulated_bank(size: int, *, guessing: bool, label: str = "bank") -> list[BankItem]:
    stream = Stream("ab" * 32, label)
    items = []
    for i in range(size):
        a = 0.8 + 1.4 * stream.uniform()
        b = -3.0 + 6.0 * stream.uniform()
        c = 0.25 * stream.uniform() if guessing else 0.0
        topic = ("topic:algebra", "topic:geometry", "topic:numbers")[i % 3]
        items.append(BankItem(f"item{i:03d}", Params(a, b, c), frozenset({topic})))
    return items


def sit(
    theta: float, bank: list[BankItem], config: AdaptiveConfig, seed: str
) -> tuple[list[tuple[str, int]], Estimate]:
    """A simulated candidate of ability theta answering whatever the engine asks."""
    by_id = {b.identifier: b for b in bank}
    answers = Stream(seed, "candidate")
    log: list[tuple[str, int]] = []
    while True:
        step = next_step(config, bank, log, seed=seed, label="s1")
        if step.item is None:
            return log, step.estimate
        right = answers.uniform() < probability(theta, by_id[step.item].params)
        log.append((step.item, int(right)))


BANK_2PL = simulated_bank(150, guessing=False)
BANK_3PL = simulated_bank(150, guessing=True, label="bank3")


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    theta=st.floats(min_value=-2.5, max_value=2.5),
    three_pl=st.booleans(),
    estimator=st.sampled_from(["eap", "mle"]),
    seed=st.binary(min_size=32, max_size=32),
)
def test_ability_is_recovered_within_the_reported_error(
    theta: float, three_pl: bool, estimator: str, seed: bytes
) -> None:
    config = AdaptiveConfig(max_items=40, se_target=0.35, estimator=estimator)  # type: ignore[arg-type]
    log, estimate = sit(theta, BANK_3PL if three_pl else BANK_2PL, config, seed.hex())
    assert estimate.se <= 0.6
    assert abs(estimate.theta - theta) <= 3 * estimate.se


def test_the_reported_error_is_honest_over_many_candidates() -> None:
    """About 95% of ±1.96·SE intervals should hold the true ability."""
    config = AdaptiveConfig(max_items=30, se_target=0.4)
    inside = 0
    runs = 120
    for n in range(runs):
        seed = hashlib.sha256(f"candidate{n}".encode()).hexdigest()
        theta = -2.0 + 4.0 * Stream(seed, "theta").uniform()
        _, estimate = sit(theta, BANK_2PL, config, seed)
        inside += abs(estimate.theta - theta) <= 1.96 * estimate.se
    assert inside / runs >= 0.88


def test_it_stops_at_the_error_target_or_the_maximum_length() -> None:
    short = AdaptiveConfig(max_items=5, se_target=0.01)
    log, _ = sit(0.5, BANK_2PL, short, "11" * 32)
    assert len(log) == 5
    assert next_step(short, BANK_2PL, log, seed="11" * 32, label="s1").reason == "max_items"
    loose = AdaptiveConfig(min_items=3, max_items=50, se_target=0.9)
    log, estimate = sit(0.5, BANK_2PL, loose, "12" * 32)
    assert 3 <= len(log) < 50
    assert estimate.se <= 0.9


def test_content_constraints_by_tag_are_kept() -> None:
    config = AdaptiveConfig(
        max_items=12,
        se_target=0.01,
        constraints=[
            {"tag": "topic:geometry", "min": 4, "max": 5},  # type: ignore[list-item]
            {"tag": "topic:numbers", "max": 2},  # type: ignore[list-item]
        ],
    )
    by_id = {b.identifier: b for b in BANK_2PL}
    for n in range(15):
        seed = hashlib.sha256(f"c{n}".encode()).hexdigest()
        log, _ = sit(-1.5 + 0.2 * n, BANK_2PL, config, seed)
        topics = Counter(t for item, _ in log for t in by_id[item].tags)
        assert len(log) == 12
        assert 4 <= topics["topic:geometry"] <= 5
        assert topics["topic:numbers"] <= 2


def test_exposure_control_spreads_the_first_item() -> None:
    """Every candidate starts at the same estimate; without exposure control all would see
    the same first item."""
    firsts = Counter(
        next_step(AdaptiveConfig(exposure_top_k=5), BANK_2PL, [], seed=s, label="s1").item
        for s in (hashlib.sha256(bytes([n])).hexdigest() for n in range(200))
    )
    assert len(firsts) == 5
    assert max(firsts.values()) < 70
    greedy = {
        next_step(AdaptiveConfig(exposure_top_k=1), BANK_2PL, [], seed=s, label="s1").item
        for s in ("01" * 32, "02" * 32)
    }
    assert len(greedy) == 1


def test_a_stored_log_replays_to_the_same_decisions() -> None:
    config = AdaptiveConfig(max_items=15, se_target=0.2)
    seed = "5e" * 32
    log, estimate = sit(1.0, BANK_3PL, config, seed)
    steps = replay(config, BANK_3PL, log, seed=seed, label="s1")
    assert [s.item for s in steps[:-1]] == [item for item, _ in log]
    assert steps[-1].item is None
    assert steps[-1].estimate == estimate
    other = replay(config, BANK_3PL, log, seed="5f" * 32, label="s1")
    assert [s.item for s in other[:-1]] != [item for item, _ in log]


def test_irt_functions_match_known_values() -> None:
    p = Params(a=1.0, b=0.0, c=0.0)
    assert probability(0.0, p) == pytest.approx(0.5)
    assert information(0.0, p) == pytest.approx(0.25)
    guess = Params(a=1.5, b=1.0, c=0.2)
    assert probability(1.0, guess) == pytest.approx(0.6)
    assert probability(-30, guess) == pytest.approx(0.2)
    assert eap([]).theta == pytest.approx(0.0, abs=1e-9)
    assert eap([]).se == pytest.approx(1.0, abs=0.01)
    mixed = [(Params(1.0, -1.0), 1), (Params(1.0, 1.0), 0), (Params(1.0, 0.0), 1)]
    theta = mle(mixed).theta
    # 2PL: the MLE solves sum(u - P(theta)) = 0
    assert sum(u - probability(theta, q) for q, u in mixed) == pytest.approx(0.0, abs=1e-6)
    assert theta == pytest.approx(0.80, abs=0.01)
    # MLE's standard error is 1/sqrt(information) at the estimate
    assert mle(mixed).se == pytest.approx(
        1 / sum(information(mle(mixed).theta, q) for q, _ in mixed) ** 0.5
    )
