"""Which format a source is, from its content: each format scores a sniffed head.

Never by the file's name: a feed saved as ``feed.md`` is still a feed, and an HTML
page saved as ``feed.xml`` is still an HTML page (an error that says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from lxml import etree

Format = Literal["documents", "xml"]
XMLKind = Literal["rss", "atom", "opml"]

#: Bytes of a file looked at to choose its format.
HEAD_BYTES = 4096


def _strip(head: bytes) -> bytes:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()


def score_documents(head: bytes) -> int:
    """Episode documents: JSON front matter (or a JSON file); other front matter is a
    page that is skipped with a reason."""
    text = _strip(head)
    if text.startswith((b"{", b"[")):
        return 10
    if text.startswith((b"---", b"+++")):
        return 5
    return 0


def score_xml(head: bytes) -> int:
    """A feed or an OPML list: XML whose root is ``rss``, ``feed`` or ``opml``."""
    text = _strip(head)
    if not text.startswith(b"<"):
        return 0
    if b"<rss" in text or b"<opml" in text or b"<feed" in text:
        return 10
    if text.startswith((b"<!doctype html", b"<html")):
        return 0
    return 1 if text.startswith(b"<?xml") else 0


def choose_format(head: bytes) -> Format | None:
    scores: dict[Format, int] = {"documents": score_documents(head), "xml": score_xml(head)}
    best = max(scores, key=lambda name: scores[name])
    return best if scores[best] > 0 else None


def xml_kind(root: etree._Element) -> XMLKind | None:
    from fetcher.sources.xmlsafe import split_tag

    namespace, name = split_tag(root.tag)
    if name == "rss":
        return "rss"
    if name == "feed" and namespace == "atom":
        return "atom"
    if name == "opml":
        return "opml"
    return None


def describe(head: bytes, root: etree._Element | None = None) -> str:
    """What a source that no format claims looks like, for the error message."""
    from fetcher.sources.xmlsafe import split_tag

    text = _strip(head[:2048])
    if text.startswith(b"%pdf"):
        return "a PDF document"
    if root is not None and split_tag(root.tag)[1].lower() == "html":
        return "an HTML page"
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:512]:
        return "an HTML page"
    if root is not None:
        return f"an XML document whose root is <{split_tag(root.tag)[1]}>"
    if not text:
        return "empty"
    if text.startswith(b"<"):
        return "an XML or HTML document"
    return "neither episode documents, a feed nor an OPML list"
