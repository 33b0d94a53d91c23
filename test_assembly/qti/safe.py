"""Reading an untrusted package: a zip and the XML in it.

Everything here refuses rather than repairs: a package is data from outside, and a half-read
package must change nothing. Limits bound memory (zip bombs: declared and actual sizes, member
count), XML is parsed with entities, DTDs and network access off (billion laughs, external
entities), and every href must name a file inside the package (no `..`, no absolute paths).
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from dataclasses import dataclass
from typing import Any

from lxml import etree

MAX_MEMBERS = 5_000
MAX_MEMBER_BYTES = 5 * 1024 * 1024
MAX_TOTAL_BYTES = 100 * 1024 * 1024
MAX_RATIO = 200  # uncompressed / compressed, per member
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class PackageError(ValueError):
    """The whole package is refused; `code` is stable for clients."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass
class Package:
    """The members of a zip that passed the checks, read lazily with limits."""

    _zip: zipfile.ZipFile
    names: frozenset[str]

    def read(self, name: str) -> bytes:
        info = self._zip.getinfo(name)
        with self._zip.open(info) as member:
            data = member.read(MAX_MEMBER_BYTES + 1)
        if len(data) > MAX_MEMBER_BYTES:
            raise PackageError("package_too_large", f"{name} is larger than the limit", file=name)
        return data

    def xml(self, name: str) -> etree._Element:
        return parse_xml(self.read(name), name)

    def resolve(self, base: str, href: str) -> str:
        """The member an href names, relative to the file `base` that contains it."""
        if not href or "\\" in href or href.startswith("/") or re.match(r"^[a-zA-Z]+:", href):
            raise PackageError(
                "unsafe_path", f"{base}: href {href!r} is not a relative path", file=base, href=href
            )
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(base), href))
        if joined.startswith("../") or joined == ".." or joined.startswith("/"):
            raise PackageError(
                "unsafe_path", f"{base}: href {href!r} leaves the package", file=base, href=href
            )
        if joined not in self.names:
            raise PackageError(
                "missing_file", f"{base}: {href!r} is not in the package", file=base, href=href
            )
        return joined


def open_package(data: bytes) -> Package:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as bad:
        raise PackageError("bad_zip", f"not a zip archive: {bad}") from None
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise PackageError("package_too_large", f"more than {MAX_MEMBERS} files")
    total = 0
    names = set()
    for info in infos:
        name = info.filename
        if name.startswith("/") or ".." in name.split("/") or "\\" in name:
            raise PackageError("unsafe_path", f"member {name!r} has an unsafe path", file=name)
        if info.is_dir():
            continue
        total += info.file_size
        if info.file_size > MAX_MEMBER_BYTES or total > MAX_TOTAL_BYTES:
            raise PackageError(
                "package_too_large", f"{name} makes the package too large", file=name
            )
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            raise PackageError(
                "package_too_large", f"{name} is compressed suspiciously well", file=name
            )
        names.add(name)
    if "imsmanifest.xml" not in names:
        raise PackageError("missing_manifest", "the package has no imsmanifest.xml at its root")
    return Package(archive, frozenset(names))


def parse_xml(data: bytes, name: str) -> etree._Element:
    """Parse without DTDs: a QTI package never needs one, and entity tricks live there."""
    if _DTD.search(data[:65536]) or b"<!ENTITY" in data:
        raise PackageError("forbidden_dtd", f"{name} declares a DTD or entities", file=name)
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as bad:
        raise PackageError(
            "broken_xml", f"{name} is not well-formed XML: {bad}", file=name
        ) from None
    return root
