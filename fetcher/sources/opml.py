"""OPML subscription lists: read every feed an OPML names, write the archive's as OPML."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from fetcher.sources.xmlsafe import split_tag


@dataclass(frozen=True, slots=True)
class Subscription:
    url: str
    title: str = ""


def read_opml(root: etree._Element) -> list[Subscription]:
    """Every ``outline`` with an ``xmlUrl`` (nested outlines too), in document order,
    each URL once."""
    found: dict[str, Subscription] = {}
    for element in root.iter():
        if split_tag(element.tag)[1] != "outline":
            continue
        url = (element.get("xmlUrl") or element.get("xmlurl") or "").strip()
        if url.lower().startswith(("http://", "https://")) and url not in found:
            title = element.get("title") or element.get("text") or ""
            found[url] = Subscription(url, title.strip())
    return list(found.values())


def write_opml(subscriptions: Iterable[Subscription], *, title: str = "fetcher") -> str:
    """An OPML 2.0 document listing *subscriptions* as RSS outlines."""
    when = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<opml version="2.0">', "  <head>",
             f"    <title>{_escape(title)}</title>", f"    <dateCreated>{when}</dateCreated>",
             "  </head>", "  <body>"]
    for sub in subscriptions:
        text = _quoted(sub.title or sub.url)
        lines.append(f'    <outline type="rss" text={text} title={text} '
                     f"xmlUrl={_quoted(sub.url)}/>")
    lines += ["  </body>", "</opml>"]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _quoted(text: str) -> str:
    """An attribute value in double quotes (xml.sax.saxutils would do, but importing
    it loads urllib.request: 30 ms of every run's start-up)."""
    escaped = (_escape(text).replace('"', "&quot;").replace("\n", "&#10;")
               .replace("\r", "&#13;").replace("\t", "&#9;"))
    return f'"{escaped}"'

