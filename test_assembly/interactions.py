"""Interaction types: what a response looks like, how it is normalised and how it is scored.

Each type is one small class in a registry, so delivery code never branches on item types. An
item is split in two at rest: `body` (what a candidate may see) and `scoring` (the correct
response, mapping and points — never sent to a candidate before the test's policy allows).

Stored responses are canonical: a resend of the same answer normalises to the same value, so the
ledger's response digest and the replay check compare equal. Pairs (match, gap match) are
`[source, target]` lists, sorted; an order is the list of choice identifiers in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

MAX_TEXT = 100_000


class ResponseError(ValueError):
    """A response that does not fit its item; `details` say how (stable, for the error reply)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


@dataclass(frozen=True)
class ItemContent:
    """One item version as delivery sees it: `item_id` is its row id, `identifier` the name a
    candidate's answers use."""

    item_id: str
    identifier: str
    type: str
    body: dict[str, Any]
    scoring: dict[str, Any]


class Interaction(Protocol):
    cardinality: str

    def normalize(self, item: ItemContent, raw: Any) -> Any:
        """The canonical stored form of `raw`, or ResponseError; None means "no answer"."""

    def matches(self, item: ItemContent, response: Any) -> bool:
        """Is `response` (normalised) the correct response?"""

    def keys(self, item: ItemContent, response: Any) -> list[str]:
        """The values a mapping is looked up by (one for single cardinality)."""


def _ids(entries: list[dict[str, Any]] | None) -> list[str]:
    return [e["identifier"] for e in entries or []]


def _identifier_list(item: ItemContent, raw: Any, what: str) -> list[str]:
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ResponseError(
            f"a {what} response is a list of choice identifiers", item_id=item.identifier
        )
    return values


def _unknown(item: ItemContent, given: set[str], known: list[str]) -> None:
    unknown = sorted(given - set(known))
    if unknown:
        raise ResponseError(
            f"unknown choice(s) {', '.join(unknown)}", item_id=item.identifier, choices=unknown
        )


class ChoiceInteraction:
    """Single and multiple choice; the response is the sorted list of chosen identifiers."""

    cardinality = "multiple"

    def normalize(self, item: ItemContent, raw: Any) -> list[str] | None:
        if raw is None:
            return None
        chosen = _identifier_list(item, raw, "choice")
        if not chosen:
            return None
        _unknown(item, set(chosen), _ids(item.body["choices"]))
        unique = sorted(set(chosen))
        max_choices = int(item.body.get("max_choices") or 0)
        if max_choices and len(unique) > max_choices:
            raise ResponseError(
                f"at most {max_choices} choice(s) may be selected",
                item_id=item.identifier,
                max_choices=max_choices,
            )
        return unique

    def matches(self, item: ItemContent, response: Any) -> bool:
        return bool(response == sorted(set(item.scoring["correct"])))

    def keys(self, item: ItemContent, response: Any) -> list[str]:
        return list(response)


class InlineChoiceInteraction:
    """One choice from a drop-down inside the prompt's text; the response is its identifier."""

    cardinality = "single"

    def normalize(self, item: ItemContent, raw: Any) -> str | None:
        if raw is None or raw == "":
            return None
        if isinstance(raw, list) and len(raw) == 1:
            raw = raw[0]
        if not isinstance(raw, str):
            raise ResponseError(
                "an inline choice response is one choice identifier", item_id=item.identifier
            )
        _unknown(item, {raw}, _ids(item.body["choices"]))
        return raw

    def matches(self, item: ItemContent, response: Any) -> bool:
        return bool(response == item.scoring["correct"])

    def keys(self, item: ItemContent, response: Any) -> list[str]:
        return [response]


def _clean_text(raw: str) -> str:
    return " ".join(raw.split())


class TextEntryInteraction:
    """A short typed answer compared with the accepted answers, whitespace collapsed and case
    folded unless the item is case sensitive."""

    cardinality = "single"

    def normalize(self, item: ItemContent, raw: Any) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise ResponseError("a text entry response is a string", item_id=item.identifier)
        limit = int(item.body.get("max_length") or 1000)
        cleaned = _clean_text(raw)
        if len(cleaned) > limit:
            raise ResponseError(
                f"the answer is longer than {limit} characters",
                item_id=item.identifier,
                max_length=limit,
            )
        return cleaned or None

    def _fold(self, item: ItemContent, text: str) -> str:
        text = _clean_text(text)
        return text if item.scoring.get("case_sensitive") else text.casefold()

    def matches(self, item: ItemContent, response: Any) -> bool:
        accepted = {self._fold(item, a) for a in item.scoring["correct"]}
        return self._fold(item, response) in accepted

    def keys(self, item: ItemContent, response: Any) -> list[str]:
        return [self._fold(item, response)]


class NumericInteraction:
    """A number, compared within an absolute or relative tolerance. Strings are accepted (a
    form field sends them) with a point or a comma as the decimal sign."""

    cardinality = "single"

    def normalize(self, item: ItemContent, raw: Any) -> float | None:
        if raw is None or raw == "":
            return None
        if isinstance(raw, bool):
            raise ResponseError("a numeric response is a number", item_id=item.identifier)
        if isinstance(raw, str):
            try:
                raw = float(raw.strip().replace(",", "."))
            except ValueError:
                raise ResponseError(
                    "a numeric response is a number", item_id=item.identifier
                ) from None
        if not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ResponseError("a numeric response is a finite number", item_id=item.identifier)
        return float(raw)

    def matches(self, item: ItemContent, response: Any) -> bool:
        correct = float(item.scoring["correct"])
        tolerance = float(item.scoring.get("tolerance") or 0.0)
        if item.scoring.get("tolerance_mode") == "relative":
            tolerance = abs(correct) * tolerance / 100.0
        return abs(float(response) - correct) <= tolerance + 1e-12

    def keys(self, item: ItemContent, response: Any) -> list[str]:
        return [repr(float(response))]


class ExtendedTextInteraction:
    """An essay: kept as written (only trailing whitespace trimmed), scored by a teacher."""

    cardinality = "single"

    def normalize(self, item: ItemContent, raw: Any) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise ResponseError("an essay response is a string", item_id=item.identifier)
        limit = int(item.body.get("max_length") or MAX_TEXT)
        text = raw.rstrip()
        if len(text) > limit:
            raise ResponseError(
                f"the answer is longer than {limit} characters",
                item_id=item.identifier,
                max_length=limit,
            )
        return text or None

    def matches(self, item: ItemContent, response: Any) -> bool:
        return False

    def keys(self, item: ItemContent, response: Any) -> list[str]:
        return []


class OrderInteraction:
    """Put every choice in order; the response is the full list of identifiers in that order."""

    cardinality = "ordered"

    def normalize(self, item: ItemContent, raw: Any) -> list[str] | None:
        if raw is None:
            return None
        order = _identifier_list(item, raw, "order")
        if not order:
            return None
        known = _ids(item.body["choices"])
        _unknown(item, set(order), known)
        if len(order) != len(set(order)) or len(order) != len(known):
            raise ResponseError(
                "an order response names every choice exactly once",
                item_id=item.identifier,
                choices=len(known),
            )
        return order

    def matches(self, item: ItemContent, response: Any) -> bool:
        return bool(response == item.scoring["correct"])

    def keys(self, item: ItemContent, response: Any) -> list[str]:
        return list(response)


class PairsInteraction:
    """Associations between two sets (match: source → target; gap match: word → gap). The
    response is the sorted list of [source, target] pairs, each end used at most match_max
    times (0 = unlimited)."""

    cardinality = "multiple"
    sources_key: ClassVar[str] = "sources"
    targets_key: ClassVar[str] = "targets"

    def _targets(self, item: ItemContent) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = item.body[self.targets_key]
        return targets

    def normalize(self, item: ItemContent, raw: Any) -> list[list[str]] | None:
        if raw is None:
            return None
        if not isinstance(raw, list) or not all(
            isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(v, str) for v in p)
            for p in raw
        ):
            raise ResponseError(
                "a pairing response is a list of [source, target] pairs", item_id=item.identifier
            )
        if not raw:
            return None
        pairs = sorted({(p[0], p[1]) for p in raw})
        sources = {s["identifier"]: s for s in item.body[self.sources_key]}
        targets = {t["identifier"]: t for t in self._targets(item)}
        _unknown(item, {s for s, _ in pairs}, list(sources))
        _unknown(item, {t for _, t in pairs}, list(targets))
        for ends, index in ((sources, 0), (targets, 1)):
            for ident, entry in ends.items():
                used = sum(1 for p in pairs if p[index] == ident)
                limit = int(entry.get("match_max", 1))
                if limit and used > limit:
                    raise ResponseError(
                        f"{ident} may be used at most {limit} time(s)",
                        item_id=item.identifier,
                        choice=ident,
                        match_max=limit,
                    )
        maximum = int(item.body.get("max_associations") or 0)
        if maximum and len(pairs) > maximum:
            raise ResponseError(
                f"at most {maximum} pair(s) may be made",
                item_id=item.identifier,
                max_associations=maximum,
            )
        return [[s, t] for s, t in pairs]

    def matches(self, item: ItemContent, response: Any) -> bool:
        correct = sorted([s, t] for s, t in item.scoring["correct"])
        return bool(response == correct)

    def keys(self, item: ItemContent, response: Any) -> list[str]:
        return [f"{s} {t}" for s, t in response]


class MatchInteraction(PairsInteraction):
    pass


class GapMatchInteraction(PairsInteraction):
    """Gaps are targets that take one word each (their match_max is 1)."""

    sources_key = "gap_texts"
    targets_key = "gaps"

    def _targets(self, item: ItemContent) -> list[dict[str, Any]]:
        return [{"identifier": g, "match_max": 1} for g in item.body["gaps"]]


INTERACTIONS: dict[str, Interaction] = {
    "choice": ChoiceInteraction(),
    "inline_choice": InlineChoiceInteraction(),
    "text_entry": TextEntryInteraction(),
    "numeric": NumericInteraction(),
    "extended_text": ExtendedTextInteraction(),
    "order": OrderInteraction(),
    "match": MatchInteraction(),
    "gap_match": GapMatchInteraction(),
}
TYPES = tuple(INTERACTIONS)


def interaction_for(item: ItemContent) -> Interaction:
    try:
        return INTERACTIONS[item.type]
    except KeyError:
        raise ResponseError(f"item type {item.type!r} is not supported") from None
