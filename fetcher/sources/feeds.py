"""Fetching feeds politely and correctly.

- conditional GET: the ETag and Last-Modified of each feed are kept (in the manifest)
  and sent; a 304 costs one small request and no parse (a counting run checks the
  files of the feed's settled items, see :mod:`.feeditems`);
- 301/308 update the stored feed URL (reported as ``moved``), 302/307 do not; 410
  marks the feed gone (reported, not asked again for 30 days); ``itunes:new-feed-url``
  switches only after the new URL parses as a feed (a feed naming itself is no move);
- paged and archived feeds (RFC 5005 ``next``, ``prev-archive``; ``fh:complete``) are
  followed to the end, on any host, with a cycle guard and a page limit;
- URLs the feed supplies carry the feed's trust (see :mod:`fetcher.net.guard`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lxml import etree

from fetcher.errors import FetcherError, SourceError, redact_url
from fetcher.model import Entry, Episode, FeedRecord, Settled, Skipped
from fetcher.settings import FeedSettings
from fetcher.sources.atom import read_atom_page
from fetcher.sources.feeditems import FeedLedger, salt
from fetcher.sources.formats import XMLKind, describe, xml_kind
from fetcher.sources.opml import read_opml
from fetcher.sources.reports import FeedStates, SourceReport
from fetcher.sources.rss import FeedPage, read_feed_page
from fetcher.sources.twins import Twins
from fetcher.sources.xmlsafe import NotXML, parse_xml

if TYPE_CHECKING:
    from fetcher.net.http import Http, SmallResponse

log = logging.getLogger(__name__)

FEED_ACCEPT = ("application/rss+xml, application/atom+xml;q=0.9, application/xml;q=0.8, "
               "text/xml;q=0.8, */*;q=0.5")
#: A gone feed (410) is asked again after this long.
GONE_RETRY = timedelta(days=30)



@dataclass
class FeedReader:
    """Reads feeds for one run with one HTTP client."""

    http: Http
    settings: FeedSettings
    states: FeedStates | None = None
    #: A fingerprint of what turns a feed's items into archive work (settings, filters):
    #: when it changed, the feed is read again even if the server says "not modified".
    fingerprint: Callable[[str], str] = lambda url: ""
    show_slugs: dict[str, str] = field(default_factory=dict)
    retry_gone: bool = False
    #: Leave out the items settled in the archive (see :mod:`.feeditems`): they come
    #: back as one :class:`Settled` per feed, for a run that counts up-to-date episodes.
    settle: bool = False

    async def read(self, url: str) -> tuple[list[Entry | Settled], list[SourceReport]]:
        """Entries and reports for the feed or OPML list at *url* (never raises)."""
        report = SourceReport(url, "feed")
        try:
            entries, more = await self._read(url, report, settle=self.settle)
        except FetcherError as error:
            report.status, report.error = "error", str(error)
            return [SourceError(url, _reason(error))], [report]
        report.episodes = sum(1 if isinstance(e, Episode) else len(e.guids)
                              for e in entries if isinstance(e, Episode | Settled))
        return entries, [report, *more]

    async def _read(self, url: str, report: SourceReport, *, settle: bool,
                    conditional: bool = True
                    ) -> tuple[list[Entry | Settled], list[SourceReport]]:
        record = self.states.get_feed(url) if self.states is not None else None
        if record is not None and record.status == "gone" and not self._ask_gone(record):
            report.status = "gone"
            return [], []
        fingerprint = self.fingerprint(url)
        target = (record.final_url if record is not None and record.final_url else url)
        headers = {}
        if (conditional and record is not None and not record.incomplete
                and record.fingerprint == fingerprint):
            if record.etag:
                headers["If-None-Match"] = record.etag
            if record.last_modified:
                headers["If-Modified-Since"] = record.last_modified
        response = await self._get(url, target, headers)
        new = record or FeedRecord(url)
        if response.status == 304:
            report.status = "not_modified"
            # Unchanged: the files of its settled items are checked (and, in a counting
            # run, the items counted); one that is missing or changed has the feed read
            # again, in full.
            ledger = open_ledger(self.states, url)
            if ledger is None or ledger.intact():
                guids = ledger.guids() if ledger is not None and settle else ()
                return ([Settled(url, guids)] if guids else []), []
            log.info("%s: an archived episode's file changed; the feed is read again",
                     redact_url(url))
            return await self._read(url, report, settle=settle, conditional=False)
        if response.status == 410:
            report.status = "gone"
            self._save(replace(new, status="gone", gone_at=_now()))
            log.warning("%s: the feed is gone (HTTP 410); it is asked again after %d days",
                        redact_url(url), GONE_RETRY.days)
            return [], []
        moved_to = _permanent_target(target, response)
        ledger = open_ledger(self.states, url)
        trust = await _trust(response.final_url)
        _, root, page = self._read_body(url, response.body, response.final_url, trust,
                                        ledger, cut=settle)
        if page is None:
            assert root is not None
            return await self.read_opml_list(root, report)
        entries: list[Entry] = list(page.entries)
        settled = list(page.settled)
        switched = await self._new_feed_url(url, target, page, trust, ledger, settle)
        if switched is not None:
            moved_to, page, entries, trust = switched
            settled = list(page.settled)
        entries += await self._follow_pages(url, page, trust,
                                            {url, target, response.final_url}, ledger,
                                            settled, settle)
        if ledger is not None:
            clash = ledger.clashes(entries, settled)  # a guid repeated across pages: rare
            forget_stale(self.states, url, ledger)
            if clash:
                return await self._read(url, report, settle=False, conditional=False)
        if moved_to is not None and moved_to != url:
            report.status, report.final_url = "moved", moved_to
            log.warning("%s: the feed has moved to %s; the new address is used from now on",
                        redact_url(url), redact_url(moved_to))
        stored_url = moved_to if moved_to and _storable(moved_to) else new.final_url
        self._save(replace(
            new, final_url=stored_url, etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"), status="ok", gone_at=None,
            fingerprint=fingerprint, title=page.show.title, incomplete=False,
        ))
        for warning in page.warnings:
            log.warning("%s: %s", redact_url(url), warning)
        found: list[Entry | Settled] = list(_deduplicated(entries, url))
        return [Settled(url, tuple(settled)), *found] if settled else found, []

    def _ask_gone(self, record: FeedRecord) -> bool:
        if self.retry_gone or not record.gone_at:
            return True
        try:
            gone = datetime.fromisoformat(record.gone_at)
        except ValueError:
            return True
        return datetime.now(UTC) - gone > GONE_RETRY

    async def _get(self, key: str, url: str, headers: dict[str, str]) -> SmallResponse:
        return await self.http.fetch_response(key, url, headers={"Accept": FEED_ACCEPT,
                                                                 **headers},
                                              max_bytes=self.settings.max_feed_bytes)

    def _read_body(self, url: str, body: bytes, base: str, trust: str,
                   ledger: FeedLedger | None, *, cut: bool, shown: str | None = None
                   ) -> tuple[XMLKind, etree._Element | None, FeedPage | None]:
        """:func:`read_body` for the feed *url* as configured, fetched from *shown*."""
        return read_body(url, body, base_url=base, trust=trust, media=self.settings.media,
                         show_slug=self.show_slugs.get(url), fingerprint=self.fingerprint(url),
                         ledger=ledger, cut=cut, shown=shown)

    async def _new_feed_url(self, url: str, target: str, page: FeedPage, trust: str,
                            ledger: FeedLedger | None, cut: bool
                            ) -> tuple[str, FeedPage, list[Entry], str] | None:
        """Switch to ``itunes:new-feed-url`` when it parses as a feed with a channel."""
        new = page.new_feed_url
        if not new or new in (url, target) or _same(new, target):
            return None
        try:
            response = await self._get(url, new, {})
            if response.status != 200:
                return None
            new_trust = await _trust(response.final_url)
            _, _, new_page = self._read_body(url, response.body, response.final_url,
                                             new_trust, ledger, cut=cut, shown=new)
        except FetcherError as error:
            log.warning("%s: itunes:new-feed-url %s does not work (%s); staying",
                        redact_url(url), redact_url(new), error)
            return None
        if new_page is None:
            return None
        if not new_page.show.title and not new_page.entries and not new_page.settled:
            return None
        return new, new_page, list(new_page.entries), new_trust

    async def _follow_pages(self, url: str, first: FeedPage, trust: str, seen: set[str],
                            ledger: FeedLedger | None, settled: list[str],
                            cut: bool) -> list[Entry]:
        """Every further page of a paged or archived feed, each once (*seen*: the
        addresses of the first page); guids of settled items are added to *settled*."""
        entries: list[Entry] = []
        queue = list(first.next_pages)
        pages = 1
        while queue:
            page_url = queue.pop(0)
            if page_url in seen:
                continue
            seen.add(page_url)
            if pages >= self.settings.max_pages:
                log.warning("%s: more than %d pages; the rest are not read ([feeds] "
                            "max_pages)", redact_url(url), self.settings.max_pages)
                break
            pages += 1
            try:
                response = await self.http.fetch_response(
                    url, page_url, max_bytes=self.settings.max_feed_bytes, trust=trust,
                    headers={"Accept": FEED_ACCEPT})
                _, _, page = self._read_body(url, response.body, response.final_url, trust,
                                             ledger, cut=cut, shown=page_url)
            except FetcherError as error:
                entries.append(SourceError(page_url, f"feed page: {_reason(error)}"))
                continue
            if page is not None:
                entries += page.entries
                settled += page.settled
                queue += [p for p in page.next_pages if p not in seen]
        return entries

    async def read_opml_list(self, root: etree._Element, report: SourceReport
                             ) -> tuple[list[Entry | Settled], list[SourceReport]]:
        """Every feed an OPML list names (*report* is the list's own): the entries, and a
        report per feed."""
        report.kind = "opml"
        entries: list[Entry | Settled] = []
        reports: list[SourceReport] = []
        for subscription in read_opml(root):
            got, more = await self.read(subscription.url)
            entries += got
            reports += more
        return entries, reports

    def _save(self, record: FeedRecord) -> None:
        if self.states is not None:
            self.states.save_feed(record)


def open_ledger(states: FeedStates | None, url: str) -> FeedLedger | None:
    """The settled items of the feed *url* (or feed file), for one read of it."""
    if states is None:
        return None
    known, root = states.settled_items(url)
    return FeedLedger(known, root)


def forget_stale(states: FeedStates | None, url: str, ledger: FeedLedger) -> None:
    """After a read of *url*: forget the settled items it did not find as they were."""
    if states is not None and (stale := ledger.stale()):
        states.forget_items(url, stale)


def read_body(source: str, body: bytes, *, base_url: str, trust: str, media: str,
              show_slug: str | None, fingerprint: str, ledger: FeedLedger | None,
              cut: bool = True, shown: str | None = None
              ) -> tuple[XMLKind, etree._Element | None, FeedPage | None]:
    """The kind of a feed's bytes, and its root (OPML) or its page read (a feed): with
    a *ledger*, its items keyed so that they can settle, and without its settled items
    if *cut* (see :mod:`.feeditems`). *source* is the feed as configured, *shown* what
    errors name (default: *source*)."""

    def read(root: etree._Element, keys: Sequence[str] | None) -> FeedPage:
        return read_feed_page(root, source=source, base_url=base_url, show_slug=show_slug,
                              trust=trust, media=media, item_keys=keys)

    keys = None
    if ledger is not None:
        key = salt(source, base_url, trust, media, show_slug or "", fingerprint)
        page, keys = ledger.read_page(body, key, read, cut=cut)
        if page is not None:
            return "rss", None, page
    kind, root, recovered = parse_feed(shown or source, body)
    if kind == "opml":
        return kind, root, None
    if kind == "rss":
        # What recovery made of a broken feed is not what its bytes say: no keys.
        return kind, None, read(root, None if recovered else keys)
    return kind, None, read_page(kind, root, source=source, base_url=base_url,
                                 show_slug=show_slug, trust=trust, media=media)


def parse_feed(source: str, body: bytes) -> tuple[XMLKind, etree._Element, bool]:
    """The kind (rss, atom, opml) and root of a feed's bytes, and whether they needed
    recovery (a warning then); SourceError naming *source* when they are not a feed (an
    HTML page, say)."""
    try:
        parsed = parse_xml(body)
    except NotXML as exc:
        raise SourceError(source, f"not a feed: {describe(body)} ({exc})") from exc
    kind = xml_kind(parsed.root)
    if kind is None:
        raise SourceError(source, f"not a feed: {describe(body, parsed.root)}")
    if parsed.recovered:
        log.warning("%s: the feed is not well-formed XML (%s); read in recovery mode",
                    redact_url(source), parsed.recovered)
    return kind, parsed.root, parsed.recovered is not None


def read_page(kind: XMLKind, root: etree._Element, *, source: str, base_url: str,
              show_slug: str | None, trust: str, media: str) -> FeedPage:
    """One RSS or Atom page's episodes, skips and links."""
    reader = read_atom_page if kind == "atom" else read_feed_page
    return reader(root, source=source, base_url=base_url, show_slug=show_slug, trust=trust,
                  media=media)


def _reason(error: FetcherError) -> str:
    return getattr(error, "reason", None) or str(error)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _same(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def _storable(url: str) -> bool:
    """A moved feed URL is remembered only when it carries no secret."""
    return "?" not in url and "@" not in url.split("//", 1)[-1].split("/", 1)[0]


def _permanent_target(start: str, response: SmallResponse) -> str | None:
    """Where 301/308 redirects lead, up to the first temporary one."""
    target = None
    for status, location in response.redirects:
        if status not in (301, 308):
            break
        target = location
    return target


async def _trust(url: str) -> str:
    from fetcher.net.guard import trust_of_feed

    return await trust_of_feed(url)


def _deduplicated(entries: list[Entry], source: str) -> list[Entry]:
    """Items repeated across pages: the same guid and audio once."""
    twins = Twins()
    result: list[Entry] = []
    for entry in entries:
        if isinstance(entry, Episode):
            kept = twins.admit(entry, result)
            if kept is None:
                result.append(Skipped(source, f"{entry.title[:60]}: repeated on another page"))
                continue
            entry = kept
        result.append(entry)
    return result


__all__ = ["FeedReader", "FeedRecord", "FeedStates", "SourceReport"]
