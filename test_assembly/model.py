"""The authoring model: items, test blueprints and policies, as validated values.

One shape serves the REST API, the item bank and QTI import/export, so `import(export(x)) == x`
can be checked on these values. An item is stored split into `body` (candidate-visible) and
`scoring` (never sent before the policy allows); `ItemDefinition.from_parts` joins them again.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from test_assembly.interactions import INTERACTIONS, ItemContent, ResponseError

# QTI wants NCNames (no leading digit); tests written before the bank used "1", so it is allowed.
IDENTIFIER = r"^[A-Za-z0-9_.\-]+$"
InteractionType = Literal[
    "choice",
    "inline_choice",
    "text_entry",
    "numeric",
    "extended_text",
    "order",
    "match",
    "gap_match",
]
BODY_FIELDS = (
    "title",
    "prompt",
    "choices",
    "max_choices",
    "min_choices",
    "shuffle",
    "sources",
    "targets",
    "gap_texts",
    "gaps",
    "max_associations",
    "expected_length",
    "max_length",
)
SCORING_FIELDS = (
    "method",
    "correct",
    "points",
    "penalty",
    "mapping",
    "case_sensitive",
    "tolerance",
    "tolerance_mode",
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChoiceDef(Strict):
    identifier: str = Field(min_length=1, max_length=128, pattern=IDENTIFIER)
    text: str = Field(min_length=1, max_length=10_000)


class AssociableDef(Strict):
    identifier: str = Field(min_length=1, max_length=128, pattern=IDENTIFIER)
    text: str = Field(min_length=1, max_length=10_000)
    match_max: int = Field(1, ge=0, le=100, description="times it may be used; 0 = unlimited")


class MappingDef(Strict):
    """QTI's mapping: the value of each answer; the item's score is the sum over the distinct
    answers given, clamped to the bounds. Keys of pairs are "source target"."""

    entries: dict[str, float] = Field(min_length=1)
    default: float = 0.0
    lower_bound: float | None = None
    upper_bound: float | None = None


class IrtParams(Strict):
    """Calibrated item parameters on the logistic metric (D = 1): discrimination a, difficulty
    b, guessing c (0 for 2PL)."""

    a: float = Field(gt=0, le=10)
    b: float = Field(ge=-10, le=10)
    c: float = Field(0.0, ge=0, lt=1)


Scoring = Literal["match_correct", "map_response", "manual"]


class ItemDefinition(Strict):
    identifier: str = Field(min_length=1, max_length=128, pattern=IDENTIFIER)
    type: InteractionType = "choice"
    title: str | None = Field(None, max_length=200)
    prompt: str = Field(
        min_length=1,
        max_length=20_000,
        description="plain text; gap match prompts mark gaps as {GAP_ID}, inline choice as {}",
    )
    choices: list[ChoiceDef] | None = Field(None, max_length=50)
    max_choices: int | None = Field(None, ge=0, description="choice: 0 = no cap")
    min_choices: int | None = Field(None, ge=0)
    shuffle: bool = Field(False, description="may an attempt shuffle the choices")
    sources: list[AssociableDef] | None = Field(None, max_length=50)
    targets: list[AssociableDef] | None = Field(None, max_length=50)
    gap_texts: list[AssociableDef] | None = Field(None, max_length=50)
    gaps: list[str] | None = Field(None, max_length=50)
    max_associations: int | None = Field(None, ge=0)
    expected_length: int | None = Field(None, ge=1, le=100_000)
    max_length: int | None = Field(None, ge=1, le=100_000)
    method: Scoring | None = Field(None, description="default: manual for essays, else match")
    correct: Any = Field(None, description="the correct response, in the response's own shape")
    points: float = Field(1.0, ge=0, le=1000)
    penalty: float = Field(0.0, ge=0, le=1000, description="lost for a wrong answer when the test "
                           "uses negative marking")  # fmt: skip
    mapping: MappingDef | None = None
    case_sensitive: bool = False
    tolerance: float = Field(0.0, ge=0)
    tolerance_mode: Literal["absolute", "relative"] = "absolute"
    tags: list[str] = Field(
        default_factory=list, max_length=50, description='e.g. "skill:fractions", "difficulty:easy"'
    )
    irt: IrtParams | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ItemDefinition:
        """Each type's required parts, and a correct response that is itself a valid answer
        (normalised, so stored values compare equal however they were written)."""
        needs = {
            "choice": ("choices",),
            "inline_choice": ("choices",),
            "order": ("choices",),
            "match": ("sources", "targets"),
            "gap_match": ("gap_texts", "gaps"),
        }.get(self.type, ())
        for name in needs:
            if not getattr(self, name):
                raise ValueError(f"item {self.identifier}: a {self.type} item needs {name}")
        for name in ("choices", "sources", "targets", "gap_texts"):
            entries = getattr(self, name) or []
            ids = [e.identifier for e in entries]
            if len(set(ids)) != len(ids):
                raise ValueError(f"item {self.identifier}: {name} identifiers must be unique")
        if self.choices is not None and len(self.choices) < 2 and self.type != "inline_choice":
            raise ValueError(f"item {self.identifier}: give at least two choices")
        if self.method is None:
            self.method = "manual" if self.type == "extended_text" else "match_correct"
        if self.type == "extended_text" and self.method != "manual":
            raise ValueError(f"item {self.identifier}: essays are scored manually")
        if self.method == "map_response" and self.mapping is None:
            raise ValueError(f"item {self.identifier}: map_response needs a mapping")
        if self.method == "match_correct" and self.correct is None:
            raise ValueError(f"item {self.identifier}: match_correct needs a correct response")
        if self.type == "choice" and self.max_choices is None:
            count = len(self.correct) if isinstance(self.correct, list) else 1
            self.max_choices = 1 if count == 1 else 0
        if self.correct is not None:
            self.correct = self._normalized_correct()
        return self

    def _normalized_correct(self) -> Any:
        item = ItemContent("", self.identifier, self.type, self.body(), self.scoring())
        interaction = INTERACTIONS[self.type]
        try:
            if self.type == "text_entry":
                accepted = self.correct if isinstance(self.correct, list) else [self.correct]
                cleaned = [interaction.normalize(item, a) for a in accepted]
                if not cleaned or any(c is None for c in cleaned):
                    raise ResponseError("accepted answers must not be empty")
                return cleaned
            value = interaction.normalize(item, self.correct)
        except ResponseError as bad:
            raise ValueError(f"item {self.identifier}: correct response: {bad.message}") from None
        if value is None:
            raise ValueError(f"item {self.identifier}: the correct response is empty")
        return value

    def body(self) -> dict[str, Any]:
        """What a candidate may see (fields left at None are omitted)."""
        data = self.model_dump(include=set(BODY_FIELDS), exclude_none=True)
        if not data.get("shuffle"):
            data.pop("shuffle", None)
        return data

    def scoring(self) -> dict[str, Any]:
        return self.model_dump(include=set(SCORING_FIELDS), exclude_none=True)

    def content(self, item_id: str = "") -> ItemContent:
        return ItemContent(item_id, self.identifier, self.type, self.body(), self.scoring())

    @classmethod
    def from_parts(
        cls,
        *,
        identifier: str,
        type: str,
        body: dict[str, Any],
        scoring: dict[str, Any],
        tags: list[str] | None = None,
        irt: dict[str, Any] | None = None,
    ) -> ItemDefinition:
        return cls.model_validate(
            {**body, **scoring, "identifier": identifier, "type": type, "tags": tags or [],
             "irt": irt}
        )  # fmt: skip


# ---- tests ------------------------------------------------------------------------------------


class Selection(Strict):
    """How a section picks its items for one attempt.

    fixed: all of `items`, in order. random: `count` of `items`. pool: `count` from the bank's
    active items carrying every tag in `tags`. stratified: `strata` counts per value of the
    `stratify_by` tag (e.g. {"easy": 2, "hard": 1} over "difficulty:…"), from `items` or, when
    `tags` is given, the tagged pool. adaptive: chosen one at a time by the engine.
    """

    mode: Literal["fixed", "random", "pool", "stratified", "adaptive"] = "fixed"
    count: int | None = Field(None, ge=1, le=500)
    tags: list[str] = Field(default_factory=list)
    stratify_by: str = Field("difficulty", min_length=1, max_length=64)
    strata: dict[str, int] | None = None
    with_replacement: bool = False


class ContentConstraint(Strict):
    tag: str = Field(min_length=1)
    min: int = Field(0, ge=0)
    max: int | None = Field(None, ge=0)


class AdaptiveConfig(Strict):
    """Computerised adaptive testing over the section's pool (items with IRT parameters)."""

    min_items: int = Field(1, ge=1, le=500)
    max_items: int = Field(20, ge=1, le=500)
    se_target: float = Field(0.3, gt=0, le=5)
    estimator: Literal["eap", "mle"] = "eap"
    exposure_top_k: int = Field(
        5, ge=1, le=50, description="randomesque: pick at random among the k most informative"
    )
    constraints: list[ContentConstraint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _lengths(self) -> AdaptiveConfig:
        if self.min_items > self.max_items:
            raise ValueError("adaptive min_items is above max_items")
        return self


class Ordering(Strict):
    shuffle_items: bool = False
    shuffle_choices: bool = Field(False, description="only items marked shuffle are reordered")


class SectionDef(Strict):
    identifier: str = Field(min_length=1, max_length=128, pattern=IDENTIFIER)
    title: str = Field("", max_length=200)
    items: list[str] = Field(default_factory=list, description="item identifiers", max_length=2000)
    selection: Selection = Field(default_factory=Selection)
    ordering: Ordering = Field(default_factory=Ordering)
    time_limit_seconds: int | None = Field(None, ge=10, le=24 * 3600)
    adaptive: AdaptiveConfig | None = None
    fixed_position: bool = Field(False, description="stays in place when sections are shuffled")

    @model_validator(mode="after")
    def _rule(self) -> SectionDef:
        mode = self.selection.mode
        if mode == "fixed" and not self.items:
            raise ValueError(f"section {self.identifier}: a fixed section lists its items")
        if mode == "random" and (not self.items or self.selection.count is None):
            raise ValueError(f"section {self.identifier}: random selection needs items and count")
        if mode == "random" and (self.selection.count or 0) > len(self.items):
            raise ValueError(f"section {self.identifier}: count is more than the items listed")
        if mode == "pool" and (not self.selection.tags or self.selection.count is None):
            raise ValueError(f"section {self.identifier}: pool selection needs tags and count")
        if mode == "stratified" and not self.selection.strata:
            raise ValueError(f"section {self.identifier}: stratified selection needs strata")
        if mode == "adaptive" and self.adaptive is None:
            self.adaptive = AdaptiveConfig()
        return self


class Policies(Strict):
    feedback: Literal["none", "per_item", "after_submission"] = Field(
        "none", description="per_item: each answer is scored when given and then locked"
    )
    review: Literal["none", "score", "responses", "full"] = Field(
        "score",
        description="after the attempt: nothing, the score, the responses marked right or wrong, "
        "or also the correct responses",
    )
    negative_marking: bool = False
    pass_mark: float | None = Field(None, ge=0, le=1, description="a fraction of the maximum")
    attempt_scoring: Literal["highest", "last", "first", "average"] = "highest"
    deadline: Literal["auto_submit", "grace"] = Field(
        "auto_submit",
        description="auto_submit: saved responses are submitted at the deadline; grace: for "
        "grace_seconds after it only submitting is allowed",
    )
    grace_seconds: int = Field(0, ge=0, le=3600)
    submission_mode: Literal["individual", "simultaneous"] = "simultaneous"


class Blueprint(Strict):
    sections: list[SectionDef] = Field(min_length=1, max_length=100)
    shuffle_sections: bool = False

    @model_validator(mode="after")
    def _unique(self) -> Blueprint:
        ids = [s.identifier for s in self.sections]
        if len(set(ids)) != len(ids):
            raise ValueError("section identifiers must be unique")
        return self

    def referenced(self) -> list[str]:
        seen: dict[str, None] = {}
        for section in self.sections:
            for ident in section.items:
                seen.setdefault(ident, None)
        return list(seen)

    @property
    def adaptive(self) -> bool:
        return any(s.selection.mode == "adaptive" for s in self.sections)

    @property
    def draws_by_tag(self) -> bool:
        """Does any section draw from the bank by tags (so the whole bank is a candidate)?"""
        return any(not s.items for s in self.sections)

    def form_length(self) -> int:
        """How many items a form will have (an adaptive section: at most)."""
        total = 0
        for s in self.sections:
            rule = s.selection
            if rule.mode == "fixed":
                total += len(s.items)
            elif rule.mode in ("random", "pool"):
                total += rule.count or 0
            elif rule.mode == "stratified":
                total += sum((rule.strata or {}).values())
            else:
                total += s.adaptive.max_items if s.adaptive else 0
        return total


class TestDefinition(Strict):
    """A whole test as a package carries it: what QTI import produces and export consumes."""

    __test__ = False  # not a pytest class, whatever its name says

    identifier: str = Field(min_length=1, max_length=128, pattern=IDENTIFIER)
    title: str = Field(min_length=1, max_length=200)
    time_limit_seconds: int = Field(ge=10, le=24 * 3600)
    navigation_mode: Literal["linear", "nonlinear"] = "nonlinear"
    attempt_limit: int = Field(1, ge=1, le=100)
    blueprint: Blueprint
    policies: Policies = Field(default_factory=Policies)
    items: list[ItemDefinition] = Field(default_factory=list)
