"""Real feeds served by the loopback server, their URLs rewritten to it.

:func:`serve_feed` takes a feed from ``tests/fixtures/feeds`` byte for byte and replaces
only the URLs the archive would fetch (enclosures, podcast:chapters,
podcast:transcript) with loopback routes that serve generated audio and the fixture
chapters and transcripts, so that malformed feeds stay malformed.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.httpserver import TestServer
from support.mp3factory import mp3_bytes

FEEDS = Path(__file__).parent.parent / "fixtures" / "feeds"
TRANSCRIPTS = {
    "text/vtt": FEEDS / "transcripts" / "pi-example.vtt",
    "application/srt": FEEDS / "transcripts" / "pi-example.srt",
    "application/x-subrip": FEEDS / "transcripts" / "pi-example.srt",
    "application/json": FEEDS / "transcripts" / "pi-example.json",
    "text/html": FEEDS / "transcripts" / "pi-example.html",
}

_ATTRIBUTE = re.compile(rb"""\b(url|type)\s*=\s*(["'])(.*?)\2""", re.DOTALL)
_TAG = re.compile(rb"<(enclosure|podcast:chapters|podcast:transcript)\b[^>]*>", re.DOTALL)
_FOLLOWED = re.compile(
    rb"""(<(?:atom:)?link\b[^>]*\brel=["'](?:next|prev-archive)["'][^>]*\bhref=["'])"""
    rb"""([^"']*)(["'])""", re.DOTALL)
_NEW_FEED = re.compile(rb"(<itunes:new-feed-url>)([^<]*)(</itunes:new-feed-url>)")


@functools.cache
def encoded_audio(kind: str, seconds: float = 1.0) -> bytes:
    """A short, valid file of *kind* (``m4a``, ``opus``, ``ogg``) made by ffmpeg."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    codec = {"m4a": ["-c:a", "aac", "-b:a", "32k"], "opus": ["-c:a", "libopus", "-b:a", "24k"],
             "ogg": ["-c:a", "libvorbis", "-q:a", "0"]}[kind]
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / f"audio.{kind}"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                        f"sine=frequency=440:duration={seconds}", *codec, str(target)],
                       check=True, timeout=60)
        return target.read_bytes()


def audio_for(kind: str, index: int, declared_ms: int | None) -> bytes:
    if kind == "mp3":
        return mp3_bytes(1_200, seed=index, declared_ms=declared_ms)
    return encoded_audio(kind)


def _kind(media_type: str) -> str:
    media_type = media_type.lower()
    if "mp4" in media_type or "m4a" in media_type or "aac" in media_type:
        return "m4a"
    if "opus" in media_type:
        return "opus"
    if "ogg" in media_type:
        return "ogg"
    return "mp3"


@dataclass
class ServedFeed:
    url: str
    route: str
    #: Routes of the audio, in the order the enclosures appear.
    audio_routes: list[str] = field(default_factory=list)
    chapter_routes: list[str] = field(default_factory=list)
    transcript_routes: list[str] = field(default_factory=list)
    body: bytes = b""


def serve_feed(server: TestServer, name: str | bytes, *, route: str = "/feed.xml",
               declared_ms: int | None = None, chapters: bytes | None = None,
               content_type: str = "application/rss+xml",
               rewrite: Callable[[bytes], bytes] | None = None,
               conditional: bool = True) -> ServedFeed:
    """Serve the fixture feed *name* (or the bytes given) at *route*; see the module."""
    data = name if isinstance(name, bytes) else (FEEDS / name).read_bytes()
    served = ServedFeed(server.url(route), route)
    prefix = route.strip("/").replace("/", "_").replace(".", "_")

    def replace(match: re.Match[bytes]) -> bytes:
        tag = match.group(0)
        element = match.group(1)
        attributes = {m.group(1): m.group(3) for m in _ATTRIBUTE.finditer(tag)}
        if b"url" not in attributes:
            return tag
        media_type = attributes.get(b"type", b"").decode("latin-1")
        index = len(served.audio_routes) + len(served.chapter_routes) \
            + len(served.transcript_routes)
        if element == b"enclosure":
            kind = _kind(media_type)
            target = f"/{prefix}/audio/{index}.{kind}"
            if media_type.lower().startswith("video/"):
                server.add(target, body=b"\x00\x00\x00\x18ftypmp42", content_type=media_type)
            else:
                server.add(target, body=audio_for(kind, index, declared_ms),
                           content_type=media_type or "audio/mpeg")
            served.audio_routes.append(target)
        elif element == b"podcast:chapters":
            target = f"/{prefix}/chapters/{index}.json"
            body = chapters or (FEEDS / "chapters" / "pi-spec-example.json").read_bytes()
            server.add(target, body=body, content_type="application/json", conditional=True)
            served.chapter_routes.append(target)
        else:
            base = media_type.split(";")[0].strip().lower()
            source = TRANSCRIPTS.get(base)
            body = source.read_bytes() if source else b"A plain text transcript.\n"
            target = f"/{prefix}/transcripts/{index}"
            server.add(target, body=body, content_type=media_type or "text/plain")
            served.transcript_routes.append(target)
        new_url = server.url(target).encode()
        return _ATTRIBUTE.sub(
            lambda m: m.group(1) + b"=" + m.group(2) + new_url + m.group(2)
            if m.group(1) == b"url" else m.group(0), tag)

    body = _TAG.sub(replace, data)
    # Pages and moves a real feed names point at real hosts: a test never goes there.
    empty = f"/{prefix}/elsewhere.xml"
    server.add(empty, body=rss(""), content_type="application/rss+xml")
    body = _FOLLOWED.sub(lambda m: m.group(1) + server.url(empty).encode() + m.group(3), body)
    body = _NEW_FEED.sub(lambda m: m.group(1) + server.url(empty).encode() + m.group(3), body)
    if rewrite is not None:
        body = rewrite(body)
    served.body = body
    server.add(route, body=body, content_type=content_type, conditional=conditional)
    return served


def rss(items: str, *, title: str = "Test Show", channel: str = "") -> bytes:
    """A small RSS feed around *items* (for cases no real feed shows)."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" '
            f'xmlns:podcast="https://podcastindex.org/namespace/1.0" '
            f'xmlns:atom="http://www.w3.org/2005/Atom">\n<channel>\n<title>{title}</title>\n'
            f"{channel}\n{items}\n</channel>\n</rss>\n").encode()


def item(guid: str, url: str, *, title: str = "", length: int | str = 0,
         date: str = "Tue, 01 Oct 2024 10:00:00 +0000", extra: str = "",
         media_type: str = "audio/mpeg") -> str:
    return (f"<item><title>{title or guid}</title><guid>{guid}</guid>"
            f"<pubDate>{date}</pubDate>"
            f'<enclosure url="{url}" length="{length}" type="{media_type}"/>{extra}</item>')
