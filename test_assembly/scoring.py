"""Scoring, server-side only: items (match correct, map response, manual), sections, the total,
the pass mark, and the result across attempts.

QTI's standard response-processing templates are `match_correct` (all or nothing) and
`map_response` (sum the mapped values of the distinct answers given, then clamp to the bounds);
an essay is `manual`. Negative marking is a test option: off, wrong answers score 0 (and a
mapping's negative values floor at 0); on, a wrong match-correct answer costs the item's
`penalty` and a mapping may go below 0. An unanswered item never costs anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from test_assembly.interactions import ItemContent, interaction_for

AttemptScoring = Literal["highest", "last", "first", "average"]


@dataclass(frozen=True)
class ItemScore:
    score: float | None  # None: an essay waiting for its grade
    max_score: float
    answered: bool
    correct: bool | None  # None when there is no single right answer (essays)
    manual: bool


def method(item: ItemContent) -> str:
    return str(item.scoring.get("method", "match_correct"))


def _mapping_lookup(item: ItemContent) -> tuple[dict[str, float], float]:
    mapping = item.scoring["mapping"]
    interaction = interaction_for(item)
    entries: dict[str, float] = {}
    for key, value in mapping["entries"].items():
        if interaction.cardinality == "single":
            canonical = interaction.keys(item, interaction.normalize(item, key))[0]
        else:
            canonical = key
        entries[canonical] = float(value)
    return entries, float(mapping.get("default", 0.0))


def max_score(item: ItemContent) -> float:
    if method(item) != "map_response":
        return float(item.scoring.get("points", 1.0))
    entries, default = _mapping_lookup(item)
    positives = sorted((v for v in entries.values() if v > 0), reverse=True)
    if interaction_for(item).cardinality == "single":
        best = max([*positives[:1], default, 0.0])
    else:
        best = sum(positives)
    upper = item.scoring["mapping"].get("upper_bound")
    return min(best, float(upper)) if upper is not None else best


def is_correct(item: ItemContent, response: Any) -> bool | None:
    if method(item) == "manual" or "correct" not in item.scoring:
        return None
    return response is not None and interaction_for(item).matches(item, response)


def score_item(
    item: ItemContent,
    response: Any,
    *,
    negative_marking: bool = False,
    grade: float | None = None,
) -> ItemScore:
    """Score one normalised response; `grade` is a teacher's score for a manual item."""
    top = max_score(item)
    answered = response is not None
    how = method(item)
    correct = is_correct(item, response)
    if how == "manual":
        score = grade if answered else 0.0
        return ItemScore(score, top, answered, None, manual=True)
    if not answered:
        return ItemScore(0.0, top, False, correct, manual=False)
    if how == "map_response":
        entries, default = _mapping_lookup(item)
        keys = set(interaction_for(item).keys(item, response))
        total = sum(entries.get(k, default) for k in keys)
        mapping = item.scoring["mapping"]
        if mapping.get("lower_bound") is not None:
            total = max(total, float(mapping["lower_bound"]))
        if mapping.get("upper_bound") is not None:
            total = min(total, float(mapping["upper_bound"]))
        if not negative_marking:
            total = max(total, 0.0)
        return ItemScore(total, top, True, correct, manual=False)
    if correct:
        return ItemScore(top, top, True, True, manual=False)
    penalty = float(item.scoring.get("penalty", 0.0)) if negative_marking else 0.0
    return ItemScore(-penalty, top, True, False, manual=False)


@dataclass(frozen=True)
class SectionScore:
    identifier: str
    score: float
    max_score: float
    pending: int


@dataclass(frozen=True)
class Result:
    score: float
    max_score: float
    sections: list[SectionScore]
    items: dict[str, ItemScore]  # by item row id
    pending: int = 0  # essays still to be graded
    passed: bool | None = None  # None: no pass mark, or not final yet

    @property
    def final(self) -> bool:
        return self.pending == 0


@dataclass(frozen=True)
class ScoringRules:
    negative_marking: bool = False
    pass_mark: float | None = None  # a fraction of the maximum, 0..1
    grades: Mapping[str, float] = field(default_factory=dict)  # item row id -> teacher's score


def score_form(
    sections: Sequence[tuple[str, Sequence[ItemContent]]],
    responses: Mapping[str, Any],
    rules: ScoringRules = ScoringRules(),
) -> Result:
    """Section and total scores of one attempt; unanswered items score zero."""
    section_scores = []
    item_scores: dict[str, ItemScore] = {}
    for identifier, items in sections:
        score = maximum = 0.0
        pending = 0
        for item in items:
            result = score_item(
                item,
                responses.get(item.item_id),
                negative_marking=rules.negative_marking,
                grade=rules.grades.get(item.item_id),
            )
            item_scores[item.item_id] = result
            maximum += result.max_score
            if result.score is None:
                pending += 1
            else:
                score += result.score
        section_scores.append(SectionScore(identifier, score, maximum, pending))
    total = sum(s.score for s in section_scores)
    top = sum(s.max_score for s in section_scores)
    pending = sum(s.pending for s in section_scores)
    passed = None
    if rules.pass_mark is not None and pending == 0:
        passed = total >= rules.pass_mark * top - 1e-9
    return Result(total, top, section_scores, item_scores, pending, passed)


def combine_attempts(policy: AttemptScoring, scores: Sequence[tuple[int, float]]) -> float | None:
    """The candidate's result across their final attempts, given (attempt_number, score)."""
    if not scores:
        return None
    ordered = sorted(scores)
    if policy == "highest":
        return max(s for _, s in ordered)
    if policy == "last":
        return ordered[-1][1]
    if policy == "first":
        return ordered[0][1]
    return sum(s for _, s in ordered) / len(ordered)
