"""The reference for fetcher's own frame encoder: the same frames built as mutagen
objects and written by mutagen's conversion and frame writer (as fetcher wrote them
before it encoded its frames itself). ``tests/test_tagging.py`` checks that
:mod:`fetcher.tagging.frames` gives these bytes for any text.

URL frames are the one deliberate difference from mutagen: their URL is not followed by
a NUL (some readers keep it as part of the URL), here as in fetcher.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any

from mutagen.id3 import (
    APIC,
    CHAP,
    COMM,
    CTOC,
    ID3,
    IPLS,
    PCST,
    TALB,
    TCOM,
    TCON,
    TDAT,
    TDES,
    TDRC,
    TGID,
    TIME,
    TIPL,
    TIT2,
    TPE1,
    TPE2,
    TPOS,
    TRCK,
    TYER,
    WFED,
    WOAF,
    WXXX,
    CTOCFlags,
    Encoding,
    Frame,
    PictureType,
)
from mutagen.id3._tags import save_frame
from mutagen.id3._util import ID3SaveConfig

from fetcher.model import Chapter, Episode
from fetcher.settings import TagSettings
from fetcher.tagging.encode import NO_OFFSET
from fetcher.tagging.frames import COMPOSER_ROLES
from fetcher.tagging.spec import latin1_url, picture_mime, public_url, resolve_url


def _text(frame: type[Frame], value: str) -> Frame:
    return frame(encoding=Encoding.UTF16, text=[value])


def metadata_frames(episode: Episode, cover: bytes | None, *, version: int = 3) -> list[Frame]:
    frames: list[Frame] = [
        _text(TIT2, episode.title),
        _text(TALB, episode.show_name),
        _text(TPE1, ", ".join(episode.hosts) if episode.hosts else episode.show_name),
        _text(TPE2, episode.show_name),
    ]
    if isinstance(episode.episode, int):
        frames.append(TRCK(encoding=Encoding.LATIN1, text=[str(episode.episode)]))
    if episode.season is not None:
        frames.append(TPOS(encoding=Encoding.LATIN1, text=[str(episode.season)]))
    composers = [p.name for p in episode.persons if p.role in COMPOSER_ROLES]
    if composers:
        frames.append(_text(TCOM, ", ".join(composers)))
    if episode.persons:
        people = TIPL if version == 4 else IPLS
        frames.append(people(encoding=Encoding.UTF16,
                             people=[[p.role, p.name] for p in episode.persons]))
    when = episode.date.astimezone(UTC)
    if version == 4:
        frames.append(TDRC(encoding=Encoding.LATIN1, text=[f"{when:%Y-%m-%dT%H:%M:%S}"]))
    else:
        frames += [
            TYER(encoding=Encoding.LATIN1, text=[f"{when:%Y}"]),
            TDAT(encoding=Encoding.LATIN1, text=[f"{when:%d%m}"]),
            TIME(encoding=Encoding.LATIN1, text=[f"{when:%H%M}"]),
        ]
    frames += [
        _text(TCON, "Podcast"),
        PCST(value=0),
        TGID(encoding=Encoding.LATIN1, text=[latin1_url(episode.guid)]),
    ]
    page = resolve_url(episode.page_url, None) if episode.page_url else None
    if page:
        frames.append(WOAF(url=latin1_url(page)))
    feed = public_url(episode.feed_url)
    if feed:
        frames.append(WFED(url=latin1_url(feed)))
    if episode.description:
        frames.append(COMM(encoding=Encoding.UTF16, lang="eng", desc="",
                           text=[episode.description]))
        frames.append(_text(TDES, episode.description))
    if episode.show_notes:
        frames.append(COMM(encoding=Encoding.UTF16, lang="eng", desc="Show Notes",
                           text=[episode.show_notes]))
    if cover is not None:
        mime = picture_mime(cover)
        if mime is not None:
            frames.append(APIC(encoding=Encoding.UTF16, mime=mime, type=PictureType.COVER_FRONT,
                               desc="", data=cover))
    return frames


def chapter_frames(chapters: list[Chapter], settings: TagSettings,
                   images: Mapping[str, bytes], base_url: str | None) -> list[Frame]:
    written = [c for c in chapters if c.toc or settings.hidden_chapters == "untoc"]
    if not written:
        return []
    if len(written) < len(chapters):
        last_end = chapters[-1].end_ms
        written = [
            dataclasses.replace(c, end_ms=written[i + 1].start_ms if i + 1 < len(written)
                                else last_end)
            for i, c in enumerate(written)
        ]
    chaps: list[Frame] = []
    toc_ids: list[str] = []
    for index, chapter in enumerate(written):
        element_id = f"chp{index}"
        sub_frames: list[Frame] = [_text(TIT2, chapter.title)]
        if chapter.url:
            url = resolve_url(chapter.url, base_url)
            if url:
                sub_frames.append(WXXX(encoding=Encoding.LATIN1, desc="", url=latin1_url(url)))
        if settings.chapter_images and chapter.img:
            image_url = resolve_url(chapter.img, base_url)
            data = images.get(image_url) if image_url else None
            mime = picture_mime(data) if data else None
            if data is not None and mime is not None:
                sub_frames.append(APIC(encoding=Encoding.LATIN1, mime=mime,
                                       type=PictureType.OTHER, desc="", data=data))
        chaps.append(CHAP(element_id=element_id, start_time=chapter.start_ms,
                          end_time=chapter.end_ms, start_offset=NO_OFFSET,
                          end_offset=NO_OFFSET, sub_frames=sub_frames))
        if chapter.toc:
            toc_ids.append(element_id)
    toc = CTOC(element_id="toc", flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
               child_element_ids=toc_ids, sub_frames=[])
    return [toc, *chaps]


def encode_frames_by_mutagen(frames: Iterable[Frame], *, version: int) -> bytes:
    """*frames* converted for *version* and written by mutagen, in the given order with
    pictures last and the first frame of each HashKey (mutagen itself lets a later frame
    replace an earlier one with the same key: a host's picture would replace the cover)."""
    ordered = []
    keys: set[str] = set()
    for frame in sorted(frames, key=lambda f: f.FrameID == "APIC"):
        if frame.HashKey not in keys:
            keys.add(frame.HashKey)
            ordered.append(frame)
    holder = ID3()
    for frame in ordered:
        holder.add(frame)
    if version == 3:
        holder.update_to_v23()
    else:
        holder.update_to_v24()
    config = ID3SaveConfig(version, "/")
    data = bytearray()
    seen: set[str] = set()
    for frame in ordered:
        if frame.HashKey in seen:
            continue
        seen.add(frame.HashKey)
        converted = holder.get(frame.HashKey)
        if converted is not None:
            data += _encode(converted, config, version)
    return bytes(data)


def _encode(frame: Any, config: ID3SaveConfig, version: int) -> bytes:
    if frame.FrameID == "CHAP":
        body = frame.element_id.encode("latin-1") + b"\x00" + struct.pack(
            ">4I", frame.start_time, frame.end_time, frame.start_offset, frame.end_offset)
        body += b"".join(_encode(sub, config, version) for sub in frame.sub_frames.values())
        return _header("CHAP", len(body), version) + body
    if frame.FrameID == "WXXX":
        body = (bytes([Encoding.LATIN1]) + frame.desc.encode("latin-1", "replace") + b"\x00"
                + frame.url.encode("latin-1", "replace"))
        return _header("WXXX", len(body), version) + body
    if frame.FrameID.startswith("W"):
        body = frame.url.encode("latin-1", "replace")
        return _header(frame.FrameID, len(body), version) + body
    encoded: bytes = save_frame(frame, config=config)
    return encoded


def _header(frame_id: str, size: int, version: int) -> bytes:
    if version == 4:
        size_bytes = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F,
                            size & 0x7F])
    else:
        size_bytes = struct.pack(">I", size)
    return frame_id.encode("ascii") + size_bytes + b"\x00\x00"
