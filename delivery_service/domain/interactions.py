"""Interaction types: how a response is validated, scored and shown to a candidate.

Each type is one small class registered by name, so the item bank (a later issue) adds text entry,
numeric, order, match … without touching delivery code. Scoring lives here, server-side only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from delivery_service.domain.errors import InvalidResponse


@dataclass(frozen=True)
class ItemContent:
    """One delivered item: `body` is what a candidate may see, `scoring` never leaves the server."""

    item_id: str
    identifier: str
    type: str
    body: dict[str, Any]
    scoring: dict[str, Any]


class Interaction(Protocol):
    def normalize(self, item: ItemContent, raw: Any) -> Any:
        """Return the canonical stored form of `raw`, or raise InvalidResponse; None clears."""

    def score(self, item: ItemContent, response: Any) -> float: ...

    def max_score(self, item: ItemContent) -> float: ...


class ChoiceInteraction:
    """Single and multiple choice; the stored response is a sorted list of choice identifiers."""

    def normalize(self, item: ItemContent, raw: Any) -> list[str] | None:
        if raw is None:
            return None
        chosen = [raw] if isinstance(raw, str) else raw
        if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
            raise InvalidResponse(
                "a choice response is a choice identifier or a list of them",
                item_id=item.identifier,
            )
        if not chosen:
            return None
        known = {c["identifier"] for c in item.body["choices"]}
        unknown = sorted(set(chosen) - known)
        if unknown:
            raise InvalidResponse(
                f"unknown choice(s) {', '.join(unknown)}", item_id=item.identifier, choices=unknown
            )
        unique = sorted(set(chosen))
        max_choices = int(item.body.get("max_choices", 0))
        if max_choices and len(unique) > max_choices:
            raise InvalidResponse(
                f"at most {max_choices} choice(s) may be selected",
                item_id=item.identifier,
                max_choices=max_choices,
            )
        return unique

    def score(self, item: ItemContent, response: Any) -> float:
        correct = sorted(set(item.scoring["correct"]))
        return float(item.scoring["points"]) if response == correct else 0.0

    def max_score(self, item: ItemContent) -> float:
        return float(item.scoring["points"])


INTERACTIONS: dict[str, Interaction] = {"choice": ChoiceInteraction()}


def interaction_for(item: ItemContent) -> Interaction:
    try:
        return INTERACTIONS[item.type]
    except KeyError:
        raise InvalidResponse(f"item type {item.type!r} is not supported") from None


def score_attempt(items: list[ItemContent], responses: dict[str, Any]) -> tuple[float, float]:
    """(score, max_score) over the form, unanswered items scoring zero."""
    score = 0.0
    maximum = 0.0
    for item in items:
        interaction = interaction_for(item)
        maximum += interaction.max_score(item)
        response = responses.get(item.item_id)
        if response is not None:
            score += interaction.score(item, response)
    return score, maximum
