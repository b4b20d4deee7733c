"""Settled feed items: a feed that changed is read without the items already archived.

A feed is read again whenever it changed, or every run when its server ignores
conditional requests, and a long-running show's feed holds thousands of items of which
one is new. Each item is known by a hash of its bytes, keyed by what it is read with
(the feed, the address it came from, its trust, the settings, fetcher's version). When
a run archives an item's episode as the item says, or a counting run finds it up to
date, the manifest remembers the item (schema 5): its hash, the hash of its channel
(:attr:`FeedPage.context`), its guid, archived file and size. Any change to the
episode's manifest row forgets it (a trigger).

The next read of the feed finds every item in the bytes (:func:`item_spans`), cuts out
the remembered ones whose archived file still has its size, and parses what is left:
the channel and the new or changed items, read as usual. The items cut out are counted
up to date, with nothing parsed, built or planned. A run that lists every episode
(``sync --json``) reads every item, keyed so that what it archives settles. When the
server says the feed has not changed (304), the remembered items' files are checked
(and, in a counting run, the items counted); a file that is missing or changed has the
feed fetched again, in full.

What is cut out must mean what it meant when it was remembered. The page is read whole,
as if nothing were remembered, unless:

- the items found in the bytes are exactly the items the parser finds (no ``<item`` in a
  comment or CDATA section, no prefixed or self-closing item, an ASCII-compatible
  charset);
- what is left parses as well-formed RSS, and its channel has the remembered context;
- no item read shares a guid with one cut out (repeated guids depend on the order of
  the items; such items are forgotten, and their feed read whole).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from lxml import etree

from fetcher._version import __version__
from fetcher.model import Episode, SettledItem
from fetcher.sources.doccache import has_size
from fetcher.sources.formats import xml_kind
from fetcher.sources.rss import FeedPage
from fetcher.sources.xmlsafe import NotXML, parse_xml

#: Reads a parsed page, the items marked with these keys (or unmarked: None).
PageReader = Callable[[etree._Element, Sequence[str] | None], FeedPage]

#: What may follow ``<item`` or ``</item`` in a tag named exactly ``item``.
_AFTER_NAME = frozenset(b" \t\r\n>/")


def _find_tag(body: bytes, tag: bytes, position: int) -> int:
    """Where the next *tag* (``<item`` or ``</item``) starts, not ``<itemFoo``; -1."""
    while True:
        at = body.find(tag, position)
        after = at + len(tag)
        if at < 0 or (after < len(body) and body[after] in _AFTER_NAME):
            return at
        position = after


def item_spans(body: bytes) -> list[tuple[int, int]] | None:
    """The byte range of each ``<item>`` element in *body*, in order; None when the
    starts and ends do not strictly alternate (then the bytes cannot be trusted to
    show the items: see the module docstring)."""
    spans: list[tuple[int, int]] = []
    start = _find_tag(body, b"<item", 0)
    end = _find_tag(body, b"</item", 0)
    while start >= 0:
        if end < start:  # closed before it opened, or never closed
            return None
        following = _find_tag(body, b"<item", start + 5)
        if 0 <= following < end:  # opened again inside
            return None
        close = body.find(b">", end + 6)
        if close < 0:
            return None
        spans.append((start, close + 1))
        start = following
        end = _find_tag(body, b"</item", close)
    return spans if end < 0 else None


def salt(*parts: str) -> bytes:
    """The key that item hashes are made with: what an item is read with."""
    return hashlib.blake2b(repr((__version__, *parts)).encode(), digest_size=32).digest()


def item_keys(body: bytes, spans: Sequence[tuple[int, int]], key: bytes) -> list[str]:
    """A hash of each item's bytes, keyed by *key* (see :func:`salt`)."""
    view = memoryview(body)
    keyed = hashlib.blake2b(key=key, digest_size=16)
    keys = []
    for start, end in spans:
        digest = keyed.copy()  # cheaper than keying a new one for each of thousands
        digest.update(view[start:end])
        keys.append(digest.hexdigest())
    return keys


def without(body: bytes, spans: Sequence[tuple[int, int]], drop: Iterable[int]) -> bytes:
    """*body* with the items at the indices *drop* (ascending) cut out."""
    view = memoryview(body)
    parts = []
    position = 0
    for index in drop:
        start, end = spans[index]
        parts.append(view[position:start])
        position = end
    parts.append(view[position:])
    return b"".join(parts)


@dataclass
class Prepared:
    """One page's items found in its bytes: their ranges, keys, and which are settled."""

    spans: list[tuple[int, int]]
    keys: list[str]
    settled: list[int]


@dataclass
class FeedLedger:
    """The settled items of one feed, for one read of it (all its pages)."""

    known: dict[str, SettledItem]
    #: The archive's directory, which the archived paths are relative to.
    root: str
    #: The keys of the items this read found.
    used: set[str] = field(default_factory=set)
    #: Items that must be forgotten: repeated guids (see the module docstring).
    spoilt: set[str] = field(default_factory=set)

    def prepare(self, body: bytes, key: bytes, *, cut: bool = True) -> Prepared | None:
        spans = item_spans(body)
        if spans is None:
            return None
        keys = item_keys(body, spans, key)
        self.used.update(keys)
        settled = ([i for i, k in enumerate(keys) if self._intact(k)]
                   if cut and self.known else [])
        return Prepared(spans, keys, settled)

    def intact(self) -> bool:
        """Every remembered item's file still has its size (an unchanged feed)."""
        return all(self._intact(key) for key in self.known)

    def guids(self) -> tuple[str, ...]:
        return tuple(row[1] for row in self.known.values())

    def _intact(self, key: str) -> bool:
        row = self.known.get(key)
        return row is not None and has_size(self.root, row[2], row[3])

    def read_page(self, body: bytes, key: bytes, read: PageReader, *,
                  cut: bool = True) -> tuple[FeedPage | None, list[str] | None]:
        """The page read without its settled items; or None and the keys of its items
        (None when they cannot be trusted), for reading it whole (always, without
        *cut*: a run that lists every episode). *key*: the :func:`salt` for this page."""
        prepared = self.prepare(body, key, cut=cut)
        if prepared is None:
            return None, None
        if prepared.settled:
            page = self.read_without_settled(body, prepared, read)
            if page is not None:
                return page, prepared.keys
        return None, prepared.keys

    def read_without_settled(self, body: bytes, prepared: Prepared,
                             read: PageReader) -> FeedPage | None:
        """The page with its settled items cut out (:attr:`FeedPage.settled` holds
        their guids), or None when it must be read whole."""
        dropped = set(prepared.settled)
        kept = [k for i, k in enumerate(prepared.keys) if i not in dropped]
        try:
            parsed = parse_xml(without(body, prepared.spans, prepared.settled))
        except NotXML:
            return None
        if parsed.recovered or xml_kind(parsed.root) != "rss":
            return None
        page = read(parsed.root, kept)
        rows = [self.known[prepared.keys[i]] for i in prepared.settled]
        if not page.keyed or any(row[0] != page.context for row in rows):
            return None
        page.settled = [row[1] for row in rows]
        if self.clashes(page.entries, page.settled):
            return None
        return page

    def clashes(self, entries: Iterable[object], settled: Iterable[str]) -> bool:
        """True when an episode read has the guid of a settled item; those items are
        then forgotten (:meth:`stale`)."""
        guids = set(settled)
        clashing = {e.guid for e in entries if isinstance(e, Episode) and e.guid in guids}
        if clashing:
            self.spoilt.update(k for k, row in self.known.items() if row[1] in clashing)
        return bool(clashing)

    def stale(self) -> list[str]:
        """Remembered items this read did not find as they were, and repeated ones."""
        return [k for k in self.known if k not in self.used or k in self.spoilt]
