"""One QTI 3.0 assessment item ↔ one ItemDefinition.

Supported: one interaction per item, of the eight types the bank holds; the standard response
processing templates match_correct and map_response (any prefix, 2.x or 3.0), and one custom
shape: `qti-equal` with a tolerance (how numeric tolerance is written). Points travel as the
MAXSCORE outcome's default value (QTI's templates always score 1; the common MAXSCORE convention
scales it), a negative-marking penalty as PENALTY, essays as SCORE with external-scored="human".
Text is plain: paragraphs become prompt lines separated by a blank line, whitespace collapses.
A text entry with several accepted answers is written as a map_response whose entries all score
the item's points (QTI's match_correct allows one value and compares case-sensitively).
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from test_assembly.model import ItemDefinition
from test_assembly.qti.upgrade import QTI3


class Unsupported(ValueError):
    """This item cannot be imported; the reason is shown to the user, per item."""


def q(name: str) -> str:
    return f"{{{QTI3}}}{name}"


def local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _collapse(text: str) -> str:
    return " ".join(text.split())


INTERACTION_TYPES = {
    "qti-choice-interaction": "choice",
    "qti-inline-choice-interaction": "inline_choice",
    "qti-text-entry-interaction": "text_entry",
    "qti-extended-text-interaction": "extended_text",
    "qti-order-interaction": "order",
    "qti-match-interaction": "match",
    "qti-gap-match-interaction": "gap_match",
}
INLINE = {"inline_choice", "text_entry", "numeric"}
BLOCKS = {"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}
CHOICE_PARTS = {
    "qti-simple-choice",
    "qti-inline-choice",
    "qti-simple-match-set",
    "qti-gap-text",
    "qti-prompt",
}
TEMPLATES = ("match_correct", "map_response")


# ---- reading ------------------------------------------------------------------------------


def _inline_text(element: etree._Element, interaction: etree._Element) -> str:
    parts = [element.text or ""]
    for child in element:
        name = local(child)
        if child is interaction:
            parts.append("{}")
        elif name == "qti-gap":
            parts.append("{" + (child.get("identifier") or "") + "}")
        elif name not in CHOICE_PARTS:
            parts.append(_inline_text(child, interaction))
        parts.append(child.tail or "")
    return "".join(parts)


def _blocks(container: etree._Element, interaction: etree._Element, kind: str) -> list[str]:
    """The prompt's paragraphs, in order, with "{}" where an inline interaction sits and
    "{GAP}" for gaps; the block interaction's own prompt where it stands."""
    blocks: list[str] = []
    loose = [container.text or ""]
    for child in container:
        name = local(child)
        if child is interaction and kind not in INLINE:
            prompt = child.find(q("qti-prompt"))
            if prompt is not None:
                blocks.append(_collapse(_inline_text(prompt, interaction)))
            if kind == "gap_match":
                blocks.extend(_blocks(child, interaction, "gap_text_container"))
        elif name in CHOICE_PARTS:
            pass
        elif interaction in child.iter() and kind not in INLINE:
            blocks.extend(_blocks(child, interaction, kind))  # a wrapper around the interaction
        elif name in BLOCKS or interaction in child.iter():
            text = _collapse(_inline_text(child, interaction))
            if text != "{}":  # an inline interaction alone in its paragraph is no prompt text
                blocks.append(text)
        else:
            loose.append(_inline_text(child, interaction))
        loose.append(child.tail or "")
    stray = _collapse("".join(loose))
    if stray:
        blocks.insert(0, stray)
    return [b for b in blocks if b]


def _float(value: str | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise Unsupported(f"{what} {value!r} is not a number") from None


def _outcome_default(root: etree._Element, identifier: str) -> float | None:
    for outcome in root.findall(q("qti-outcome-declaration")):
        if outcome.get("identifier") == identifier:
            value = outcome.find(f"{q('qti-default-value')}/{q('qti-value')}")
            if value is not None:
                return _float(value.text, f"{identifier} default")
    return None


def _choices(interaction: etree._Element, tag: str) -> list[dict[str, Any]]:
    return [
        {"identifier": c.get("identifier"), "text": _collapse(_inline_text(c, interaction))}
        for c in interaction.iter(q(tag))
    ]


def _associables(match_set: etree._Element, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "identifier": c.get("identifier"),
            "text": _collapse(_inline_text(c, match_set)),
            "match_max": int(c.get("match-max", "1")),
        }
        for c in match_set.findall(q(tag))
    ]


def _processing(root: etree._Element) -> tuple[str | None, dict[str, Any]]:
    """(template name, extra) — extra holds a numeric tolerance from the custom shape."""
    rp = root.find(q("qti-response-processing"))
    if rp is None:
        return None, {}
    template = rp.get("template") or rp.get("template-location")
    if template:
        name = template.rstrip("/").rsplit("/", 1)[-1].removesuffix(".xml")
        if name == "map_response_point" or name not in TEMPLATES:
            raise Unsupported(f"response processing template {name!r} is not supported")
        return name, {}
    equal = rp.find(f".//{q('qti-equal')}")
    value = rp.find(f".//{q('qti-set-outcome-value')}/{q('qti-base-value')}")
    if equal is None or len(list(rp.iter())) > 12:
        raise Unsupported("custom response processing is not supported (use a standard template)")
    tolerance = (equal.get("tolerance") or "0").split()[0]
    return "match_correct", {
        "tolerance": _float(tolerance, "tolerance"),
        "tolerance_mode": "relative" if equal.get("tolerance-mode") == "relative" else "absolute",
        "points_from_rule": _float(value.text if value is not None else None, "score"),
    }


def read_item(root: etree._Element) -> ItemDefinition:
    """Raise Unsupported with a reason for anything this server cannot deliver faithfully."""
    if local(root) != "qti-assessment-item":
        raise Unsupported(f"expected qti-assessment-item, found {local(root)}")
    body = root.find(q("qti-item-body"))
    if body is None:
        raise Unsupported("the item has no body")
    interactions = [e for e in body.iter() if local(e).endswith("-interaction")]
    if len(interactions) != 1:
        raise Unsupported(
            f"the item has {len(interactions)} interactions; one per item is supported"
        )
    interaction = interactions[0]
    kind = INTERACTION_TYPES.get(local(interaction))
    if kind is None:
        raise Unsupported(f"{local(interaction)} is not supported")
    declarations = {d.get("identifier"): d for d in root.findall(q("qti-response-declaration"))}
    declaration = declarations.get(interaction.get("response-identifier"))
    if declaration is None:
        raise Unsupported("the interaction's response declaration is missing")
    base_type = declaration.get("base-type", "")
    if kind == "text_entry" and base_type in ("float", "integer"):
        kind = "numeric"
    spec: dict[str, Any] = {
        "identifier": root.get("identifier"),
        "type": kind,
        "title": root.get("title") if root.get("title") != root.get("identifier") else None,
        "prompt": "\n\n".join(_blocks(body, interaction, kind)) or "(no prompt)",
    }
    if kind in ("choice", "order"):
        spec["choices"] = _choices(interaction, "qti-simple-choice")
        spec["shuffle"] = interaction.get("shuffle") == "true"
    if kind == "choice":
        spec["max_choices"] = int(interaction.get("max-choices", "1"))
        if interaction.get("min-choices") not in (None, "0"):
            spec["min_choices"] = int(interaction.get("min-choices", "0"))
    if kind == "inline_choice":
        spec["choices"] = _choices(interaction, "qti-inline-choice")
        spec["shuffle"] = interaction.get("shuffle") == "true"
    if kind == "match":
        sets = interaction.findall(q("qti-simple-match-set"))
        if len(sets) != 2:
            raise Unsupported("a match interaction needs two simple match sets")
        spec["sources"] = _associables(sets[0], "qti-simple-associable-choice")
        spec["targets"] = _associables(sets[1], "qti-simple-associable-choice")
        spec["shuffle"] = interaction.get("shuffle") == "true"
    if kind == "gap_match":
        spec["gap_texts"] = _associables(interaction, "qti-gap-text")
        spec["gaps"] = [g.get("identifier") for g in interaction.iter(q("qti-gap"))]
        spec["shuffle"] = interaction.get("shuffle") == "true"
    if kind in ("match", "gap_match") and interaction.get("max-associations") not in (None, "0"):
        spec["max_associations"] = int(interaction.get("max-associations", "0"))
    if kind in ("text_entry", "extended_text") and interaction.get("expected-length"):
        spec["expected_length"] = int(interaction.get("expected-length", "0"))
    if interaction.get("data-max-length"):
        spec["max_length"] = int(interaction.get("data-max-length", "0"))

    values = [
        v.text or "" for v in declaration.findall(f"{q('qti-correct-response')}/{q('qti-value')}")
    ]
    points = _outcome_default(root, "MAXSCORE")
    penalty = _outcome_default(root, "PENALTY")
    if penalty:
        spec["penalty"] = penalty
    template, extra = _processing(root)
    mapping = declaration.find(q("qti-mapping"))
    if kind == "extended_text":
        spec["method"] = "manual"
        spec["points"] = points if points is not None else 1.0
        return ItemDefinition.model_validate(spec)
    if template is None:
        raise Unsupported("the item has no response processing and is not an essay")
    if kind in ("match", "gap_match"):
        spec["correct"] = [v.split() for v in values] or None
    elif kind in ("choice", "order"):
        spec["correct"] = values or None
    elif kind == "numeric":
        spec["correct"] = _float(values[0], "correct value") if values else None
        spec["tolerance"] = extra.get("tolerance", 0.0)
        spec["tolerance_mode"] = extra.get("tolerance_mode", "absolute")
        if extra.get("points_from_rule") is not None and points is None:
            points = extra["points_from_rule"]
    elif kind == "text_entry":
        spec["correct"] = values or None
        spec["case_sensitive"] = True  # QTI compares strings exactly
    else:
        spec["correct"] = values[0] if values else None
    spec["points"] = points if points is not None else 1.0
    spec["method"] = template
    if mapping is not None:
        entries = mapping.findall(q("qti-map-entry"))
        mapped = {
            e.get("map-key", ""): _float(e.get("mapped-value"), "mapped value") or 0.0
            for e in entries
        }
        spec["mapping"] = {
            "entries": mapped,
            "default": _float(mapping.get("default-value"), "default value") or 0.0,
            "lower_bound": _float(mapping.get("lower-bound"), "lower bound"),
            "upper_bound": _float(mapping.get("upper-bound"), "upper bound"),
        }
        if kind == "text_entry":
            spec["case_sensitive"] = any(e.get("case-sensitive") == "true" for e in entries)
            _accepted_answers(spec)
    if spec["method"] == "match_correct":
        spec.pop("mapping", None)  # match_correct never reads it
    try:
        return ItemDefinition.model_validate(spec)
    except ValueError as bad:
        raise Unsupported(str(bad).splitlines()[-1].strip()) from None


def _accepted_answers(spec: dict[str, Any]) -> None:
    """A map_response text entry whose entries all score the upper bound is how accepted
    answers are written (module docstring): read it back as match_correct."""
    mapping = spec["mapping"]
    values = set(mapping["entries"].values())
    if (
        spec["method"] == "map_response"
        and len(values) == 1
        and mapping["default"] == 0.0
        and mapping["lower_bound"] is None
        and mapping["upper_bound"] in (None, *values)
        and all(c in mapping["entries"] for c in spec.get("correct") or [])
    ):
        correct = list(spec.get("correct") or [])
        spec["correct"] = correct + [k for k in mapping["entries"] if k not in correct]
        spec["points"] = values.pop()
        spec["method"] = "match_correct"
        del spec["mapping"]


# ---- writing ------------------------------------------------------------------------------


def _el(parent: etree._Element | None, name: str, text: str | None = None, **attrs: Any) -> Any:
    clean = {k.replace("_", "-"): str(v) for k, v in attrs.items() if v is not None}
    element = (
        etree.Element(q(name), clean, nsmap={None: QTI3})  # type: ignore[dict-item]
        if parent is None
        else etree.SubElement(parent, q(name), clean)
    )
    if text is not None:
        element.text = text
    return element


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _paragraphs(parent: etree._Element, prompt: str, inline: Any = None) -> None:
    """Write the prompt's paragraphs; "{}" becomes the inline interaction, "{ID}" a gap."""
    for paragraph in prompt.split("\n\n"):
        p = _el(parent, "p")
        pieces = _split_marks(paragraph)
        last: Any = None
        for kind, value in pieces:
            if kind == "text":
                if last is None:
                    p.text = (p.text or "") + value
                else:
                    last.tail = (last.tail or "") + value
            elif kind == "slot" and inline is not None:
                last = inline(p)
            else:
                last = _el(p, "qti-gap", identifier=value)


def _split_marks(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    rest = text
    while rest:
        start = rest.find("{")
        end = rest.find("}", start)
        if start < 0 or end < 0:
            out.append(("text", rest))
            break
        if start:
            out.append(("text", rest[:start]))
        name = rest[start + 1 : end]
        out.append(("slot", "") if name == "" else ("gap", name))
        rest = rest[end + 1 :]
    return out


def write_item(item: ItemDefinition) -> etree._Element:
    root: etree._Element = _el(
        None,
        "qti-assessment-item",
        identifier=item.identifier,
        title=item.title or item.identifier,
        time_dependent="false",
        adaptive="false",
    )
    base = {
        "choice": "identifier",
        "inline_choice": "identifier",
        "order": "identifier",
        "text_entry": "string",
        "extended_text": "string",
        "numeric": "float",
        "match": "directedPair",
        "gap_match": "directedPair",
    }[item.type]
    cardinality = {
        "choice": "multiple" if item.max_choices != 1 else "single",
        "order": "ordered",
        "match": "multiple",
        "gap_match": "multiple",
    }.get(item.type, "single")
    declaration = _el(
        root,
        "qti-response-declaration",
        identifier="RESPONSE",
        cardinality=cardinality,
        base_type=base,
    )
    correct = item.correct
    text_answers = item.type == "text_entry" and item.method == "match_correct"
    if correct is not None:
        values: list[str]
        if item.type in ("match", "gap_match"):
            values = [f"{s} {t}" for s, t in correct]
        elif isinstance(correct, list):
            values = [str(v) for v in correct]
        else:
            values = [repr(correct) if isinstance(correct, float) else str(correct)]
        if item.type == "text_entry":
            values = values[:1]
        holder = _el(declaration, "qti-correct-response")
        for value in values:
            _el(holder, "qti-value", value)
    mapping = item.mapping
    if text_answers:
        mapping_el = _el(
            declaration, "qti-mapping", default_value="0", upper_bound=_num(item.points)
        )
        for answer in correct:
            _el(
                mapping_el,
                "qti-map-entry",
                map_key=answer,
                mapped_value=_num(item.points),
                case_sensitive=_bool(item.case_sensitive),
            )
    elif mapping is not None:
        mapping_el = _el(
            declaration,
            "qti-mapping",
            default_value=_num(mapping.default),
            lower_bound=_num(mapping.lower_bound),
            upper_bound=_num(mapping.upper_bound),
        )
        for key, mapped in mapping.entries.items():
            extra = {"case_sensitive": _bool(item.case_sensitive)} if base == "string" else {}
            _el(mapping_el, "qti-map-entry", map_key=key, mapped_value=_num(mapped), **extra)
    score = _el(
        root, "qti-outcome-declaration", identifier="SCORE", cardinality="single", base_type="float"
    )
    if item.method == "manual":
        score.set("external-scored", "human")
    for outcome_id, default in (("MAXSCORE", item.points), ("PENALTY", item.penalty or None)):
        if default is not None:
            outcome = _el(
                root,
                "qti-outcome-declaration",
                identifier=outcome_id,
                cardinality="single",
                base_type="float",
            )
            _el(_el(outcome, "qti-default-value"), "qti-value", _num(default))
    body = _el(root, "qti-item-body")
    _write_interaction(body, item)
    if item.method != "manual":
        _write_processing(root, item, text_answers)
    return root


def _num(value: float | None) -> str | None:
    if value is None:
        return None
    return repr(float(value))


def _write_interaction(body: etree._Element, item: ItemDefinition) -> None:
    kind = item.type
    if kind in INLINE:

        def inline(p: etree._Element) -> Any:
            if kind == "inline_choice":
                el = _el(
                    p,
                    "qti-inline-choice-interaction",
                    response_identifier="RESPONSE",
                    shuffle=_bool(item.shuffle),
                )
                for c in item.choices or []:
                    _el(el, "qti-inline-choice", c.text, identifier=c.identifier)
                return el
            return _el(
                p,
                "qti-text-entry-interaction",
                response_identifier="RESPONSE",
                expected_length=item.expected_length,
                data_max_length=item.max_length,
            )

        prompt = item.prompt if "{}" in item.prompt else item.prompt + "\n\n{}"
        _paragraphs(body, prompt, inline)
        return
    name = {v: k for k, v in INTERACTION_TYPES.items()}[kind]
    attrs: dict[str, Any] = {"response_identifier": "RESPONSE"}
    if kind in ("choice", "order", "match", "gap_match"):
        attrs["shuffle"] = _bool(item.shuffle)
    if kind == "choice":
        attrs["max_choices"] = item.max_choices
        attrs["min_choices"] = item.min_choices
    if kind in ("match", "gap_match"):
        attrs["max_associations"] = item.max_associations or 0
    if kind == "extended_text":
        attrs["expected_length"] = item.expected_length
        attrs["data_max_length"] = item.max_length
    *stem, last = item.prompt.split("\n\n")
    if kind != "gap_match" and stem:
        _paragraphs(body, "\n\n".join(stem))
    interaction = _el(body, name, **attrs)
    if kind != "gap_match":
        _el(interaction, "qti-prompt", last)
    if kind in ("choice", "order"):
        for c in item.choices or []:
            _el(interaction, "qti-simple-choice", c.text, identifier=c.identifier)
    if kind == "match":
        for group in (item.sources or [], item.targets or []):
            match_set = _el(interaction, "qti-simple-match-set")
            for a in group:
                _el(
                    match_set,
                    "qti-simple-associable-choice",
                    a.text,
                    identifier=a.identifier,
                    match_max=a.match_max,
                )
    if kind == "gap_match":
        for a in item.gap_texts or []:
            _el(interaction, "qti-gap-text", a.text, identifier=a.identifier, match_max=a.match_max)
        _paragraphs(interaction, item.prompt)


def _write_processing(root: etree._Element, item: ItemDefinition, text_answers: bool) -> None:
    template = "map_response" if text_answers else item.method
    if item.type == "numeric" and item.tolerance:
        rp = _el(root, "qti-response-processing")
        branch = _el(_el(rp, "qti-response-condition"), "qti-response-if")
        tolerance = _num(item.tolerance) or "0"
        equal = _el(
            branch,
            "qti-equal",
            tolerance_mode=item.tolerance_mode,
            tolerance=f"{tolerance} {tolerance}",
        )
        _el(equal, "qti-variable", identifier="RESPONSE")
        _el(equal, "qti-correct", identifier="RESPONSE")
        outcome = _el(branch, "qti-set-outcome-value", identifier="SCORE")
        _el(outcome, "qti-base-value", _num(item.points), base_type="float")
        return
    location = f"https://purl.imsglobal.org/spec/qti/v3p0/rptemplates/{template}.xml"
    _el(root, "qti-response-processing", template=location)
