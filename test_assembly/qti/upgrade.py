"""QTI 2.1 / 2.2 → 3.0: the same information model with new spellings.

3.0 renamed every QTI element to a `qti-` prefixed kebab-case name (`choiceInteraction` →
`qti-choice-interaction`, `value` → `qti-value`) and every attribute to kebab case (`maxChoices`
→ `max-choices`), in a new namespace. HTML content keeps its names. Upgrading the tree once lets
one reader handle all three versions.
"""

from __future__ import annotations

import re

from lxml import etree

QTI3 = "http://www.imsglobal.org/xsd/imsqtiasi_v3p0"
QTI2 = {
    "http://www.imsglobal.org/xsd/imsqti_v2p1": "2.1",
    "http://www.imsglobal.org/xsd/imsqti_v2p2": "2.2",
}
HTML = frozenset(
    "a abbr address article aside b bdi bdo big blockquote br caption cite code col colgroup dd "
    "del details dfn div dl dt em figcaption figure footer h1 h2 h3 h4 h5 h6 header hr i img ins "
    "kbd label li nav ol p pre q rp rt ruby s samp section small span strong sub summary sup "
    "table tbody td tfoot th thead tr tt u ul var audio video source track picture".split()
)
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def kebab(name: str) -> str:
    return _CAMEL.sub("-", name).lower()


def version_of(root: etree._Element) -> str:
    namespace = etree.QName(root).namespace or ""
    if namespace == QTI3:
        return "3.0"
    if namespace in QTI2:
        return QTI2[namespace]
    raise ValueError(f"unknown QTI namespace {namespace!r}")


def upgrade(root: etree._Element) -> etree._Element:
    """Rewrite a QTI 2.x tree in place into 3.0 names; a 3.0 tree is returned as it is."""
    namespace = etree.QName(root).namespace
    if namespace not in QTI2:
        return root
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        qname = etree.QName(element)
        if qname.namespace != namespace:
            continue
        local = qname.localname
        new = local if local in HTML else "qti-" + kebab(local)
        element.tag = f"{{{QTI3}}}{new}"
        for attribute in [str(a) for a in element.attrib]:
            if attribute.startswith("{"):
                continue
            renamed = kebab(attribute)
            if renamed != attribute:
                element.attrib[renamed] = element.attrib.pop(attribute)
    etree.cleanup_namespaces(root)
    return root
