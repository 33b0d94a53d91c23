"""Building one attempt's form from a blueprint: which items, in which order, with which choice
order — a pure function of the blueprint, the items available and the attempt's seed, so the
stored seed rebuilds the stored form exactly (`assemble(...) == attempt.layout` is the audit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from test_assembly.model import Blueprint, SectionDef
from test_assembly.rng import Stream


class AssemblyError(ValueError):
    """The blueprint asks for more than the bank holds; `details` say where."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Candidate:
    """What selection needs to know about an item (not its content)."""

    identifier: str
    tags: frozenset[str] = frozenset()
    choices: tuple[str, ...] = ()  # shuffleable choice identifiers, in authored order
    shuffle: bool = False


@dataclass
class FormSection:
    identifier: str
    title: str
    items: list[str]
    time_limit_seconds: int | None = None
    adaptive: bool = False


@dataclass
class Form:
    sections: list[FormSection]
    choice_order: dict[str, list[str]] = field(default_factory=dict)

    @property
    def items(self) -> list[str]:
        return [i for s in self.sections for i in s.items]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Form:
        return cls(
            sections=[FormSection(**s) for s in data["sections"]],
            choice_order={k: list(v) for k, v in data.get("choice_order", {}).items()},
        )


def pool(section: SectionDef, available: Mapping[str, Candidate]) -> list[Candidate]:
    """The items a section draws from, in a stable order (authored order, else identifier)."""
    wanted = set(section.selection.tags)
    if section.items:
        chosen = [available[i] for i in section.items if i in available]
        missing = [i for i in section.items if i not in available]
        if missing:
            raise AssemblyError(
                f"section {section.identifier} names items that are not available: "
                f"{', '.join(missing)}",
                section=section.identifier,
                missing=missing,
            )
        return [c for c in chosen if wanted <= c.tags]
    return sorted((c for c in available.values() if wanted <= c.tags), key=lambda c: c.identifier)


def _draw(section: SectionDef, candidates: list[Candidate], stream: Stream) -> list[Candidate]:
    rule = section.selection
    if rule.mode == "fixed":
        return candidates
    if rule.mode in ("random", "pool"):
        count = rule.count or 0
        if count > len(candidates):
            raise AssemblyError(
                f"section {section.identifier} draws {count} items from a pool of "
                f"{len(candidates)}",
                section=section.identifier,
                wanted=count,
                available=len(candidates),
            )
        return stream.sample(candidates, count)
    if rule.mode == "stratified":
        prefix = f"{rule.stratify_by}:"
        picked: list[Candidate] = []
        for stratum, count in (rule.strata or {}).items():
            members = [c for c in candidates if prefix + stratum in c.tags]
            if count > len(members):
                raise AssemblyError(
                    f"section {section.identifier} draws {count} {stratum} items from "
                    f"{len(members)}",
                    section=section.identifier,
                    stratum=stratum,
                    wanted=count,
                    available=len(members),
                )
            picked.extend(stream.sample(members, count))
        return picked
    return []  # adaptive: the engine picks during the attempt


def assemble(blueprint: Blueprint, available: Mapping[str, Candidate], seed: str) -> Form:
    """The form for one attempt. An item appears at most once in a form: a later section
    skips what an earlier one took (by the sections' authored order, before any shuffle)."""
    used: set[str] = set()
    sections: list[FormSection] = []
    choice_order: dict[str, list[str]] = {}
    for section in blueprint.sections:
        candidates = [c for c in pool(section, available) if c.identifier not in used]
        picked = _draw(section, candidates, Stream(seed, f"select:{section.identifier}"))
        if section.ordering.shuffle_items:
            picked = Stream(seed, f"order:{section.identifier}").shuffled(picked)
        used.update(c.identifier for c in picked)
        for c in picked:
            if section.ordering.shuffle_choices and c.shuffle and c.choices:
                choice_order[c.identifier] = Stream(seed, f"choices:{c.identifier}").shuffled(
                    c.choices
                )
        sections.append(
            FormSection(
                identifier=section.identifier,
                title=section.title,
                items=[c.identifier for c in picked],
                time_limit_seconds=section.time_limit_seconds,
                adaptive=section.selection.mode == "adaptive",
            )
        )
    if blueprint.shuffle_sections:
        sections = _shuffle_sections(blueprint, sections, Stream(seed, "sections"))
    return Form(sections=sections, choice_order=choice_order)


def _shuffle_sections(
    blueprint: Blueprint, sections: list[FormSection], stream: Stream
) -> list[FormSection]:
    """Shuffle the movable sections among the places they held; fixed ones stay put."""
    fixed = [s.fixed_position for s in blueprint.sections]
    movable = stream.shuffled([s for s, f in zip(sections, fixed, strict=True) if not f])
    out = []
    for section, stays in zip(sections, fixed, strict=True):
        out.append(section if stays else movable.pop(0))
    return out
