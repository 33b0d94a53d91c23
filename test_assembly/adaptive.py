"""Computerised adaptive testing: IRT (2PL/3PL), ability estimation, item choice.

The engine is a pure function of (configuration, item parameters, the responses so far, the
attempt's seed): the server replays it from the stored log to audit any decision. Choice is by
maximum Fisher information at the current estimate, with randomesque exposure control (one of
the k most informative, drawn from the seeded stream) so the best items are not shown to every
candidate, and content constraints by tag (a tag's maximum is never passed; once the remaining
places are only just enough for the unmet minimums, only items that meet one are eligible).

Scale: the logistic metric (D = 1). EAP integrates over a fixed grid on [-4, 4] with a standard
normal prior; MLE is Newton-Raphson and falls back to EAP while every answer is right (or wrong),
where no finite maximum exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from test_assembly.assembly import AssemblyError, Candidate, Form, pool
from test_assembly.model import AdaptiveConfig, Blueprint
from test_assembly.rng import Stream

GRID = [-4.0 + 8.0 * i / 160 for i in range(161)]
PRIOR = [math.exp(-0.5 * t * t) for t in GRID]


@dataclass(frozen=True)
class Params:
    a: float
    b: float
    c: float = 0.0


@dataclass(frozen=True)
class BankItem:
    identifier: str
    params: Params
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Estimate:
    theta: float
    se: float


@dataclass(frozen=True)
class Step:
    """The engine's decision: the next item, or None with the reason it stopped."""

    item: str | None
    estimate: Estimate
    reason: str | None = None  # se_target | max_items | pool_exhausted


def probability(theta: float, p: Params) -> float:
    """P(correct | theta) under the 3PL model (c = 0 gives 2PL)."""
    z = p.a * (theta - p.b)
    if z >= 0:
        logistic = 1.0 / (1.0 + math.exp(-z))
    else:
        e = math.exp(z)
        logistic = e / (1.0 + e)
    return p.c + (1.0 - p.c) * logistic


def information(theta: float, p: Params) -> float:
    """Fisher information of one item at theta (Birnbaum's 3PL formula)."""
    prob = min(max(probability(theta, p), 1e-12), 1 - 1e-12)
    return p.a**2 * ((prob - p.c) ** 2 / (1.0 - p.c) ** 2) * ((1.0 - prob) / prob)


def eap(responses: Sequence[tuple[Params, int]]) -> Estimate:
    """Expected a posteriori ability and its posterior standard deviation."""
    log_post = []
    for theta, prior in zip(GRID, PRIOR, strict=True):
        value = math.log(prior)
        for params, correct in responses:
            prob = min(max(probability(theta, params), 1e-12), 1 - 1e-12)
            value += math.log(prob if correct else 1.0 - prob)
        log_post.append(value)
    peak = max(log_post)
    weights = [math.exp(v - peak) for v in log_post]
    total = sum(weights)
    mean = sum(t * w for t, w in zip(GRID, weights, strict=True)) / total
    var = sum((t - mean) ** 2 * w for t, w in zip(GRID, weights, strict=True)) / total
    return Estimate(mean, math.sqrt(var))


def mle(responses: Sequence[tuple[Params, int]]) -> Estimate:
    """Maximum likelihood ability, its standard error 1/sqrt(test information)."""
    scores = {correct for _, correct in responses}
    if len(scores) < 2:
        return eap(responses)
    theta = eap(responses).theta
    for _ in range(50):
        gradient = hessian = 0.0
        for params, correct in responses:
            prob = min(max(probability(theta, params), 1e-12), 1 - 1e-12)
            star = (prob - params.c) / (1.0 - params.c)
            # d log L / d theta for 3PL (Lord 1980), and the expected information.
            gradient += params.a * star * (correct - prob) / prob
            hessian -= information(theta, params)
        step = gradient / hessian if hessian else 0.0
        theta = min(max(theta - step, -4.0), 4.0)
        if abs(step) < 1e-6:
            break
    test_info = sum(information(theta, p) for p, _ in responses)
    return Estimate(theta, 1.0 / math.sqrt(test_info) if test_info > 0 else float("inf"))


def estimate(config: AdaptiveConfig, responses: Sequence[tuple[Params, int]]) -> Estimate:
    if not responses:
        return eap(())
    return mle(responses) if config.estimator == "mle" else eap(responses)


def _eligible(
    config: AdaptiveConfig, bank: Sequence[BankItem], given: Sequence[str]
) -> list[BankItem]:
    taken = set(given)
    by_id = {b.identifier: b for b in bank}
    counts = {c.tag: sum(1 for g in given if c.tag in by_id[g].tags) for c in config.constraints}
    eligible = [
        b
        for b in bank
        if b.identifier not in taken
        and not any(
            c.max is not None and c.tag in b.tags and counts[c.tag] >= c.max
            for c in config.constraints
        )
    ]
    unmet = [c for c in config.constraints if counts[c.tag] < c.min]
    needed = sum(c.min - counts[c.tag] for c in unmet)
    remaining = config.max_items - len(given)
    if unmet and needed >= remaining:
        meeting = [b for b in eligible if any(c.tag in b.tags for c in unmet)]
        if meeting:
            return meeting
    return eligible


def next_step(
    config: AdaptiveConfig,
    bank: Sequence[BankItem],
    log: Sequence[tuple[str, int]],
    *,
    seed: str,
    label: str,
) -> Step:
    """Decide after `log` (identifier, 1 if right else 0), in order: stop, or which item next."""
    by_id = {b.identifier: b for b in bank}
    given = [identifier for identifier, _ in log]
    current = estimate(config, [(by_id[i].params, s) for i, s in log])
    if len(given) >= config.max_items:
        return Step(None, current, "max_items")
    counts_met = all(
        sum(1 for g in given if c.tag in by_id[g].tags) >= c.min for c in config.constraints
    )
    if len(given) >= config.min_items and current.se <= config.se_target and counts_met:
        return Step(None, current, "se_target")
    eligible = _eligible(config, bank, given)
    if not eligible:
        return Step(None, current, "pool_exhausted")
    ranked = sorted(eligible, key=lambda b: (-information(current.theta, b.params), b.identifier))
    top = ranked[: config.exposure_top_k]
    choice = Stream(seed, f"cat:{label}:{len(given)}").below(len(top))
    return Step(top[choice].identifier, current)


def replay(
    config: AdaptiveConfig,
    bank: Sequence[BankItem],
    log: Sequence[tuple[str, int]],
    *,
    seed: str,
    label: str,
) -> list[Step]:
    """Every decision the engine made for `log`: the audit that the stored items were the
    engine's own choices (each log entry must equal the step before it)."""
    return [next_step(config, bank, log[:n], seed=seed, label=label) for n in range(len(log) + 1)]


def params_of(items: Mapping[str, Mapping[str, float] | None]) -> dict[str, Params]:
    return {
        ident: Params(float(p["a"]), float(p["b"]), float(p.get("c", 0.0)))
        for ident, p in items.items()
        if p
    }


# ---- delivery: an adaptive section inside an attempt's form ---------------------------------


@dataclass
class SectionState:
    """One adaptive section of one attempt, as stored in the attempt's layout: the pinned
    configuration and pool, and the log of (item, 1 if right else 0) the engine decided on."""

    config: AdaptiveConfig
    pool: list[str]
    log: list[tuple[str, int]]
    theta: float
    se: float
    stopped: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "pool": self.pool,
            "log": [[i, s] for i, s in self.log],
            "theta": self.theta,
            "se": self.se,
            "stopped": self.stopped,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SectionState:
        return cls(
            config=AdaptiveConfig.model_validate(data["config"]),
            pool=list(data["pool"]),
            log=[(str(i), int(s)) for i, s in data["log"]],
            theta=float(data["theta"]),
            se=float(data["se"]),
            stopped=data.get("stopped"),
        )


def begin(
    blueprint: Blueprint,
    form: Form,
    available: Mapping[str, Candidate],
    params: Mapping[str, Params],
    seed: str,
) -> dict[str, SectionState]:
    """Give each adaptive section of `form` its first item (in place) and its pinned pool.

    Pools are the section's calibrated candidates not already in the form and not in an earlier
    adaptive section's pool, so sections never compete for an item and a replay needs nothing
    but what is stored.
    """
    taken = set(form.items)
    states: dict[str, SectionState] = {}
    for definition in blueprint.sections:
        if definition.selection.mode != "adaptive":
            continue
        config = definition.adaptive or AdaptiveConfig()
        bank = [
            BankItem(c.identifier, params[c.identifier], c.tags)
            for c in pool(definition, available)
            if c.identifier in params and c.identifier not in taken
        ]
        if len(bank) < config.min_items:
            raise AssemblyError(
                f"adaptive section {definition.identifier} needs at least {config.min_items} "
                f"calibrated items (with IRT parameters); the bank has {len(bank)}",
                section=definition.identifier,
                wanted=config.min_items,
                available=len(bank),
            )
        first = next_step(config, bank, [], seed=seed, label=definition.identifier)
        section = next(s for s in form.sections if s.identifier == definition.identifier)
        section.items = [first.item] if first.item else []
        taken.update(b.identifier for b in bank)
        states[definition.identifier] = SectionState(
            config=config,
            pool=[b.identifier for b in bank],
            log=[],
            theta=first.estimate.theta,
            se=first.estimate.se,
            stopped=first.reason,
        )
    return states


def advance(
    state: SectionState,
    bank: Sequence[BankItem],
    identifier: str,
    right: bool,
    *,
    seed: str,
    label: str,
) -> Step:
    """Log the answer to the section's current item and decide what follows (in place)."""
    state.log.append((identifier, int(right)))
    step = next_step(state.config, bank, state.log, seed=seed, label=label)
    state.theta, state.se, state.stopped = step.estimate.theta, step.estimate.se, step.reason
    return step


ENDED = "ended"  # the attempt ended on the section's current item: it is scored, nothing chosen


def close(state: SectionState, bank: Sequence[BankItem], identifier: str, right: bool) -> None:
    """The attempt ended while `identifier` was the section's current item and it was answered:
    count it in the final estimate and choose nothing after it (in place)."""
    by_id = {b.identifier: b for b in bank}
    state.log.append((identifier, int(right)))
    final = estimate(state.config, [(by_id[i].params, score) for i, score in state.log])
    state.theta, state.se, state.stopped = final.theta, final.se, ENDED
