"""QTI 3.0 content packages: import into (items, test) and export back.

A package is imsmanifest.xml plus qti-assessment-test and qti-assessment-item files. What QTI
expresses natively is written natively (test parts' navigation and submission modes, sections,
item refs, selection `select`, ordering `shuffle`, time limits, `fixed` sections, response
declarations and templates); what it has no element for travels in namespaced extensions that
other tools ignore: an `es:section` rule inside qti-selection (pool, stratified and adaptive
selection, choice shuffling), and the manifest's resource metadata (item tags and IRT
parameters, the test's attempt limit and policies). So import(export(x)) == x.

Per-item problems are reported and the item skipped (sections lose the refs to it); with
`all_or_nothing` any problem refuses the whole package. Package-level problems always refuse.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from pydantic import ValidationError

from test_assembly.model import (
    Blueprint,
    ItemDefinition,
    Policies,
    SectionDef,
    TestDefinition,
)
from test_assembly.qti.items import Unsupported, local, q, read_item, write_item
from test_assembly.qti.safe import Package, PackageError, open_package
from test_assembly.qti.upgrade import QTI3, upgrade, version_of

CP = "http://www.imsglobal.org/xsd/qti/qtiv3p0/imscp_v1p1"
EXT = "urn:examserver:qti-extension"
DEFAULT_TIME_LIMIT = 3600


@dataclass(frozen=True)
class Problem:
    file: str
    identifier: str | None
    reason: str


@dataclass
class ImportResult:
    items: list[ItemDefinition]
    test: TestDefinition | None
    problems: list[Problem] = field(default_factory=list)
    version: str = "3.0"
    test_file: str | None = None  # where the test came from, to name it in a later problem


def _cp(name: str) -> str:
    return f"{{{CP}}}{name}"


def _ext(name: str) -> str:
    return f"{{{EXT}}}{name}"


def _any(element: etree._Element, name: str) -> list[etree._Element]:
    """Children by local name in any namespace (manifests come with several IMS CP versions)."""
    return [c for c in element.iter() if isinstance(c.tag, str) and local(c) == name]


# ---- import -------------------------------------------------------------------------------


def import_package(data: bytes, *, all_or_nothing: bool = False) -> ImportResult:
    package = open_package(data)
    manifest = package.xml("imsmanifest.xml")
    tests: list[tuple[str, etree._Element]] = []
    items_by_href: dict[str, ItemDefinition] = {}
    problems: list[Problem] = []
    version = "3.0"
    for resource in _any(manifest, "resource"):
        kind = resource.get("type", "")
        href = resource.get("href")
        if "imsqti_item" not in kind and "imsqti_test" not in kind:
            continue
        if not href:
            problems.append(
                Problem("imsmanifest.xml", resource.get("identifier"), "resource without an href")
            )
            continue
        path = package.resolve("imsmanifest.xml", href)
        root = package.xml(path)
        try:
            version = version_of(root)
        except ValueError as bad:
            problems.append(Problem(path, root.get("identifier"), str(bad)))
            continue
        root = upgrade(root)
        if "imsqti_test" in kind:
            tests.append((path, root))
            continue
        try:
            item = read_item(root)
            items_by_href[path] = _with_item_metadata(item, resource)
        except Unsupported as why:
            problems.append(Problem(path, root.get("identifier"), str(why)))
    if len(tests) > 1:
        problems.extend(
            Problem(path, root.get("identifier"), "only one test per package is imported")
            for path, root in tests[1:]
        )
    test = None
    if tests:
        path, root = tests[0]
        metadata = _test_metadata(manifest, path)
        test = _read_test(package, path, root, items_by_href, metadata, problems)
    items = list(items_by_href.values())
    identifiers = [i.identifier for i in items]
    duplicates = sorted({i for i in identifiers if identifiers.count(i) > 1})
    if duplicates:
        raise PackageError(
            "duplicate_identifier", f"item identifiers used twice: {', '.join(duplicates)}"
        )
    if all_or_nothing and problems:
        raise PackageError(
            "import_incomplete",
            f"{len(problems)} problem(s); nothing was imported",
            problems=[p.__dict__ for p in problems],
        )
    if not items and test is None:
        raise PackageError(
            "empty_package",
            "the package holds no importable item or test",
            problems=[p.__dict__ for p in problems],
        )
    return ImportResult(items, test, problems, version, tests[0][0] if tests else None)


def _with_item_metadata(item: ItemDefinition, resource: etree._Element) -> ItemDefinition:
    tags = [t.text or "" for t in resource.iter(_ext("tag"))]
    irt = next(resource.iter(_ext("irt")), None)
    update: dict[str, Any] = {}
    if tags:
        update["tags"] = tags
    if irt is not None:
        update["irt"] = {k: float(v) for k, v in irt.attrib.items() if k in ("a", "b", "c")}
    if not update:
        return item
    return ItemDefinition.model_validate(item.model_dump() | update)


def _test_metadata(manifest: etree._Element, path: str) -> dict[str, Any]:
    for resource in _any(manifest, "resource"):
        if resource.get("href") and path.endswith(resource.get("href", "")):
            found = next(resource.iter(_ext("test")), None)
            if found is not None and found.text:
                try:
                    data: dict[str, Any] = json.loads(found.text)
                    return data
                except ValueError:
                    return {}
    return {}


def _seconds(element: etree._Element | None) -> int | None:
    limits = element.find(q("qti-time-limits")) if element is not None else None
    if limits is None or not limits.get("max-time"):
        return None
    return max(10, round(float(limits.get("max-time", "0"))))


def _read_test(
    package: Package,
    path: str,
    root: etree._Element,
    items_by_href: dict[str, ItemDefinition],
    metadata: dict[str, Any],
    problems: list[Problem],
) -> TestDefinition | None:
    if local(root) != "qti-assessment-test":
        problems.append(Problem(path, root.get("identifier"), "not a qti-assessment-test"))
        return None
    parts = root.findall(q("qti-test-part"))
    if not parts:
        problems.append(Problem(path, root.get("identifier"), "the test has no test part"))
        return None
    if len({(p.get("navigation-mode"), p.get("submission-mode")) for p in parts}) > 1:
        problems.append(
            Problem(
                path, root.get("identifier"), "test parts with different modes were merged into one"
            )
        )
    sections: list[etree._Element] = []
    shuffle_sections = False
    for part in parts:
        top = part.findall(q("qti-assessment-section"))
        if len(top) == 1 and top[0].find(q("qti-assessment-section")) is not None:
            ordering = top[0].find(q("qti-ordering"))
            shuffle_sections = ordering is not None and ordering.get("shuffle") == "true"
            top = top[0].findall(q("qti-assessment-section"))
        sections.extend(top)
    section_defs = []
    for section in sections:
        built = _read_section(package, path, section, items_by_href, problems)
        if built is not None:
            section_defs.append(built)
    if not section_defs:
        problems.append(Problem(path, root.get("identifier"), "no section could be imported"))
        return None
    limits = root.find(q("qti-time-limits"))
    policies = dict(metadata.get("policies") or {})
    if limits is not None and limits.get("allow-late-submission") == "true":
        policies.setdefault("deadline", "grace")
    first = parts[0]
    try:
        return TestDefinition(
            identifier=root.get("identifier") or "test",
            title=root.get("title") or root.get("identifier") or "Imported test",
            time_limit_seconds=_seconds(root) or DEFAULT_TIME_LIMIT,
            navigation_mode="linear" if first.get("navigation-mode") == "linear" else "nonlinear",
            attempt_limit=int(metadata.get("attempt_limit", 1)),
            blueprint=Blueprint(sections=section_defs, shuffle_sections=shuffle_sections),
            policies=Policies.model_validate(
                policies | {"submission_mode": first.get("submission-mode", "simultaneous")}
            ),
            items=list(items_by_href.values()),
        )
    except ValidationError as bad:
        problems.append(Problem(path, root.get("identifier"), _first_error(bad)))
        return None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _read_section(
    package: Package,
    path: str,
    section: etree._Element,
    items_by_href: dict[str, ItemDefinition],
    problems: list[Problem],
) -> SectionDef | None:
    identifier = section.get("identifier") or "section"
    refs = []
    for ref in section.iter(q("qti-assessment-item-ref")):
        href = ref.get("href", "")
        target = package.resolve(path, href)
        item = items_by_href.get(target)
        if item is None:
            problems.append(
                Problem(
                    path,
                    ref.get("identifier"),
                    f"section {identifier}: item {href} was not imported",
                )
            )
            continue
        refs.append(item.identifier)
    if section.find(f"{q('qti-assessment-section')}") is not None:
        problems.append(Problem(path, identifier, "nested sections were flattened"))
    spec: dict[str, Any] = {
        "identifier": identifier,
        "title": section.get("title") or "",
        "items": refs,
        "time_limit_seconds": _seconds(section),
        "fixed_position": section.get("fixed") == "true",
    }
    selection = section.find(q("qti-selection"))
    ordering = section.find(q("qti-ordering"))
    rule = next(section.iter(_ext("section")), None)
    if rule is not None and rule.text:
        spec |= json.loads(rule.text)
        if spec.pop("refs_are_pool", False):
            spec["items"] = []
    else:
        if selection is not None and selection.get("select"):
            spec["selection"] = {
                "mode": "random",
                "count": int(selection.get("select", "1")),
                "with_replacement": selection.get("with-replacement") == "true",
            }
        if ordering is not None and ordering.get("shuffle") == "true":
            spec["ordering"] = {"shuffle_items": True}
    mode = spec.get("selection", {}).get("mode", "fixed")
    if mode in ("fixed", "random") and not refs:
        problems.append(Problem(path, identifier, f"section {identifier} has no importable item"))
        return None
    if mode == "random":
        spec["selection"]["count"] = min(spec["selection"]["count"], len(refs))
    try:
        return SectionDef.model_validate(spec)
    except ValidationError as bad:
        problems.append(Problem(path, identifier, _first_error(bad)))
        return None


# ---- export -------------------------------------------------------------------------------


def _xml(root: etree._Element) -> bytes:
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data


def export_package(test: TestDefinition) -> bytes:
    """A QTI 3.0 package of `test` and its items (pool sections carry the items given)."""
    files: dict[str, bytes] = {}
    item_paths = {}
    for item in test.items:
        item_paths[item.identifier] = f"items/{item.identifier}.xml"
        files[item_paths[item.identifier]] = _xml(write_item(item))
    test_path = f"tests/{test.identifier}.xml"
    files[test_path] = _xml(_write_test(test, item_paths))
    files["imsmanifest.xml"] = _xml(_write_manifest(test, test_path, item_paths))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ["imsmanifest.xml", *sorted(n for n in files if n != "imsmanifest.xml")]:
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), files[name])
    return out.getvalue()


def _sub(parent: etree._Element, name: str, **attrs: Any) -> etree._Element:
    clean = {k.replace("_", "-"): str(v) for k, v in attrs.items() if v is not None}
    return etree.SubElement(parent, q(name), clean)


def _write_test(test: TestDefinition, item_paths: dict[str, str]) -> etree._Element:
    root = etree.Element(
        q("qti-assessment-test"),
        {"identifier": test.identifier, "title": test.title},
        nsmap={None: QTI3, "es": EXT},  # type: ignore[dict-item]
    )
    late = "true" if test.policies.deadline == "grace" else "false"
    _sub(root, "qti-time-limits", max_time=test.time_limit_seconds, allow_late_submission=late)
    part = _sub(
        root,
        "qti-test-part",
        identifier="part1",
        navigation_mode=test.navigation_mode,
        submission_mode=test.policies.submission_mode,
    )
    holder = part
    if test.blueprint.shuffle_sections:
        holder = _sub(
            part, "qti-assessment-section", identifier="sections", title="", visible="false"
        )
        _sub(holder, "qti-ordering", shuffle="true")
    for section in test.blueprint.sections:
        element = _sub(
            holder,
            "qti-assessment-section",
            identifier=section.identifier,
            title=section.title,
            visible="true",
            fixed="true" if section.fixed_position else None,
        )
        selection = _sub(
            element, "qti-selection", select=section.selection.count or len(section.items) or 1
        )
        refs = section.items or _pool_members(test, section)
        rule: dict[str, Any] = section.model_dump(
            mode="json", include={"selection", "ordering", "adaptive"}, exclude_defaults=True
        )
        if refs and not section.items:
            rule["refs_are_pool"] = True  # the refs bring the pool's items, not a fixed list
        etree.SubElement(selection, _ext("section")).text = json.dumps(rule, sort_keys=True)
        if section.ordering.shuffle_items:
            _sub(element, "qti-ordering", shuffle="true")
        if section.time_limit_seconds:
            _sub(element, "qti-time-limits", max_time=section.time_limit_seconds)
        for ident in refs:
            _sub(
                element, "qti-assessment-item-ref", identifier=ident, href="../" + item_paths[ident]
            )
    return root


def _pool_members(test: TestDefinition, section: SectionDef) -> list[str]:
    """Item refs of a tag pool: the package's items that carry every tag (they travel with
    the test so the pool still exists where it is imported)."""
    wanted = set(section.selection.tags)
    if not wanted:
        return []
    return [i.identifier for i in test.items if wanted <= set(i.tags)]


def _write_manifest(
    test: TestDefinition, test_path: str, item_paths: dict[str, str]
) -> etree._Element:
    root = etree.Element(
        _cp("manifest"),
        {"identifier": f"manifest-{test.identifier}"},
        nsmap={None: CP, "es": EXT},  # type: ignore[dict-item]
    )
    etree.SubElement(root, _cp("organizations"))
    resources = etree.SubElement(root, _cp("resources"))
    test_resource = etree.SubElement(
        resources,
        _cp("resource"),
        {"identifier": test.identifier, "type": "imsqti_test_xmlv3p0", "href": test_path},
    )
    meta = etree.SubElement(etree.SubElement(test_resource, _cp("metadata")), _ext("test"))
    meta.text = json.dumps(
        {
            "attempt_limit": test.attempt_limit,
            "policies": test.policies.model_dump(mode="json", exclude={"submission_mode"}),
        },
        sort_keys=True,
    )
    etree.SubElement(test_resource, _cp("file"), {"href": test_path})
    for ident in item_paths:
        etree.SubElement(test_resource, _cp("dependency"), {"identifierref": f"item-{ident}"})
    for item in test.items:
        resource = etree.SubElement(
            resources,
            _cp("resource"),
            {
                "identifier": f"item-{item.identifier}",
                "type": "imsqti_item_xmlv3p0",
                "href": item_paths[item.identifier],
            },
        )
        if item.tags or item.irt:
            metadata = etree.SubElement(resource, _cp("metadata"))
            for tag in item.tags:
                etree.SubElement(metadata, _ext("tag")).text = tag
            if item.irt:
                etree.SubElement(
                    metadata, _ext("irt"), {k: repr(v) for k, v in item.irt.model_dump().items()}
                )
        etree.SubElement(resource, _cp("file"), {"href": item_paths[item.identifier]})
    return root
