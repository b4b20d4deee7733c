"""Parsing XML from strangers: no entity expansion, no DTD, no network, a size cap.

:func:`parse_xml` reads bytes the way a feed reader must: the charset comes from the
XML declaration (or the BOM), a stray newline or BOM before the declaration is
forgiven, and a document that is not well-formed (a bare ``&``, an undefined entity,
bytes that are not in the declared charset) is read again in libxml2's recovery mode
with a warning that names the source, rather than lost. Entities are never expanded
(billion laughs) and external ones never loaded (XXE).

Namespaces are matched by URI, never by prefix: :func:`namespace_key` turns the URIs
podcast feeds use, in any of their spellings, into a short key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.entities import html5

from lxml import etree

#: Feeds larger than this are refused rather than parsed.
MAX_XML_BYTES = 64 * 1024 * 1024

NAMESPACES = {
    "https://podcastindex.org/namespace/1.0": "podcast",
    "https://github.com/podcastindex-org/podcast-namespace/blob/main/docs/1.0.md": "podcast",
    "http://www.itunes.com/dtds/podcast-1.0.dtd": "itunes",
    "https://www.itunes.com/dtds/podcast-1.0.dtd": "itunes",
    "http://purl.org/rss/1.0/modules/content/": "content",
    "http://www.w3.org/2005/atom": "atom",
    "http://podlove.org/simple-chapters": "psc",
    "http://podlove.org/simple-chapters/": "psc",
    "http://purl.org/syndication/history/1.0": "fh",
    "http://search.yahoo.com/mrss/": "media",
    "http://purl.org/dc/elements/1.1/": "dc",
}
_KEYS: dict[str, str] = {}


def namespace_key(uri: str) -> str:
    """``podcast``, ``itunes``, ``atom``, ... for a namespace URI in any letter case
    (with or without a trailing slash); the lower-cased URI when it is none of them."""
    key = _KEYS.get(uri)
    if key is None:
        lowered = uri.strip().lower()
        key = NAMESPACES.get(lowered) or NAMESPACES.get(lowered.rstrip("/")) or lowered
        if key == lowered and "podcastindex" in lowered and "namespace" in lowered:
            key = "podcast"  # a variant spelling of the Podcasting 2.0 namespace
        _KEYS[uri] = key
    return key


_SPLIT: dict[str, tuple[str, str]] = {}


def split_tag(tag: object) -> tuple[str, str]:
    """(namespace key, local name) of an element's tag; ("", "") for comments and PIs."""
    found = _SPLIT.get(tag) if isinstance(tag, str) else ("", "")
    if found is None:
        assert isinstance(tag, str)
        if tag[0] == "{":
            uri, _, local = tag[1:].partition("}")
            found = (namespace_key(uri), local)
        else:
            found = ("", tag)
        if len(_SPLIT) < 4096:
            _SPLIT[tag] = found
    return found


@dataclass(frozen=True, slots=True)
class Parsed:
    root: etree._Element
    #: Why the document needed recovery; None when it was well-formed.
    recovered: str | None = None


class NotXML(ValueError):
    """The bytes hold no XML document at all."""


_PRELUDE = re.compile(rb"^(?:\xef\xbb\xbf)?\s+(?=<)")
#: A document type declaration with its internal subset: feeds have no use for one, and
#: entity definitions there are how entity bombs and external entities arrive.
_DOCTYPE = re.compile(rb"<!DOCTYPE\s[^\[>]*(?:\[.*?\]\s*)?>", re.DOTALL | re.IGNORECASE)
_DECLARED = re.compile(rb"^<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"']")


def _parser(recover: bool) -> etree.XMLParser:
    return etree.XMLParser(
        recover=recover, resolve_entities=False, no_network=True, load_dtd=False,
        dtd_validation=False, huge_tree=False, remove_comments=True, remove_pis=True,
        collect_ids=False,
    )


def parse_xml(data: bytes) -> Parsed:
    """The root element of *data*; raises NotXML when nothing can be recovered."""
    if len(data) > MAX_XML_BYTES:
        raise NotXML(f"{len(data)} bytes, more than the {MAX_XML_BYTES}-byte limit")
    data = _PRELUDE.sub(b"", data, count=1)
    doctype = _DOCTYPE.search(data, 0, 4096)
    removed = None
    if doctype is not None and doctype.start() < data.find(b"<", doctype.end()) + 1:
        data = data[:doctype.start()] + data[doctype.end():]
        removed = "its document type declaration was removed (entities are never expanded)"
    try:
        root = etree.fromstring(data, _parser(recover=False))
    except etree.XMLSyntaxError as exc:
        problem = str(exc.msg or exc).split(", line")[0]
    else:
        return Parsed(root, removed)
    root = _recover(data)
    if root is None:
        raise NotXML(problem)
    return Parsed(root, f"{removed}; {problem}" if removed else problem)


_AMPERSAND = re.compile(rb"&(?:([A-Za-z][A-Za-z0-9]{0,31});|#(?:[0-9]{1,7}|x[0-9A-Fa-f]{1,6});)?")
_XML_ENTITIES = frozenset({b"amp", b"lt", b"gt", b"quot", b"apos"})


def _repair_ampersands(data: bytes) -> bytes:
    """What real feeds get wrong most: a bare ``&`` becomes ``&amp;`` and an HTML entity
    (``&nbsp;``, ``&eacute;``) its character reference; character references stay."""

    def fix(match: re.Match[bytes]) -> bytes:
        whole, name = match.group(0), match.group(1)
        if whole == b"&":
            return b"&amp;"
        if name is None or name in _XML_ENTITIES:
            return whole
        text = html5.get(name.decode("ascii") + ";")
        if text is None:
            return b"&amp;" + whole[1:]
        return b"".join(b"&#%d;" % ord(ch) for ch in text)

    return _AMPERSAND.sub(fix, data)


def _recover(data: bytes) -> etree._Element | None:
    data = _repair_ampersands(data)
    try:
        root = etree.fromstring(data, _parser(recover=True))
    except etree.XMLSyntaxError:
        root = None
    if root is not None and len(root):
        return root
    # Bytes that are not in the declared charset can stop libxml2 even in recovery:
    # decode with replacement characters and read the text as UTF-8.
    declared = _DECLARED.match(data)
    encoding = declared.group(1).decode() if declared else "utf-8"
    try:
        text = data.decode(encoding, errors="replace")
    except LookupError:
        text = data.decode("utf-8", errors="replace")
    text = re.sub(r"^<\?xml[^>]*\?>", "", text, count=1)
    try:
        again = etree.fromstring(text.encode("utf-8"), _parser(recover=True))
    except etree.XMLSyntaxError:
        return root
    return again if again is not None else root


def text_of(element: etree._Element | None) -> str:
    """The element's text with surrounding whitespace removed ("" when absent)."""
    if element is None:
        return ""
    text = element.text
    return text.strip() if text else ""
