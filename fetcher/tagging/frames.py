"""The mutagen frames an Episode becomes, encoded in fetcher's own order.

- ID3v2.3, text in UTF-16 with BOM: ffmpeg misreads CHAP sub-frame sizes in v2.4, and
  Apple Podcasts has failed on long v2.4 chapter titles.
- mutagen sorts frames by size when it saves; ffprobe lists chapters in file order.
  So the tag is assembled here frame by frame (mutagen encodes each frame) in a fixed
  order: text frames, host frames, CTOC, CHAP in start order, pictures.
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
from mutagen.id3._tags import save_frame  # the one frame encoder; version pinned
from mutagen.id3._util import ID3SaveConfig

from fetcher.audio import id3v2_header
from fetcher.model import Chapter, Episode, normalise_chapters
from fetcher.settings import TagSettings
from fetcher.tagging.spec import (
    image_base,
    latin1_url,
    picture_mime,
    public_url,
    resolve_url,
)

#: Room left in every tag we write, so later re-tags fit in place.
PADDING = 8 * 1024
NO_OFFSET = 0xFFFFFFFF
#: Frames fetcher owns; a host's copies of these are replaced, every other frame kept.
OWNED = ("TIT2", "TALB", "TPE1", "TPE2", "TRCK", "TCON", "TDES", "TGID", "PCST", "WOAF",
         "TPOS", "TCOM", "IPLS", "TIPL", "WFED")
#: podcast:person roles written as composers (TCOM); every person goes into IPLS.
COMPOSER_ROLES = frozenset({"composer", "music", "songwriter"})
DATE_FRAMES = ("TDRC", "TDRL", "TYER", "TDAT", "TIME", "TORY", "TDOR")
CHAPTER_FRAMES = ("CHAP", "CTOC")


#: The text frames fetcher writes with one value (see :func:`_direct`).
_PLAIN_TEXT = frozenset({TIT2, TALB, TPE1, TPE2, TRCK, TPOS, TCOM, TYER, TDAT, TIME, TCON,
                         TGID, TDES})


def _text(frame: type[Frame], value: str) -> Frame:
    return frame(encoding=Encoding.UTF16, text=[value])


def metadata_frames(episode: Episode, cover: bytes | None, *, version: int = 3) -> list[Frame]:
    """The episode's own frames for ID3v2.*version*, in the order they are written."""
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
        frames.append(IPLS(encoding=Encoding.UTF16,
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


def chapter_frames(
    chapters: list[Chapter],
    settings: TagSettings,
    images: Mapping[str, bytes],
    base_url: str | None,
) -> list[Frame]:
    """CTOC first, then one CHAP per chapter in start order."""
    written = [c for c in chapters if c.toc or settings.hidden_chapters == "untoc"]
    if not written:
        return []
    if len(written) < len(chapters):
        # Hidden ("silent") chapters are left out: each visible chapter runs on to the
        # next visible start, so no stretch of the audio is left without a chapter.
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
        assert chapter.end_ms is not None, "chapters are ended before tagging"
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
        chaps.append(
            CHAP(
                element_id=element_id,
                start_time=chapter.start_ms,
                end_time=chapter.end_ms,
                start_offset=NO_OFFSET,
                end_offset=NO_OFFSET,
                sub_frames=sub_frames,
            )
        )
        if chapter.toc:
            toc_ids.append(element_id)
    toc = CTOC(
        element_id="toc",
        flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
        child_element_ids=toc_ids,
        sub_frames=[],
    )
    return [toc, *chaps]


def host_frames(
    existing: Iterable[ID3], *, replace_chapters: bool, cover: bool
) -> list[Frame]:
    """The frames of the tags already in the file that fetcher keeps (first copy wins)."""
    dropped = set(OWNED) | set(DATE_FRAMES)
    if replace_chapters:
        dropped |= set(CHAPTER_FRAMES)
    kept: list[Frame] = []
    seen: set[str] = set()
    for frame in (f for tag in existing for f in tag.values()):
        if frame.HashKey in seen:
            continue
        seen.add(frame.HashKey)
        if frame.FrameID in dropped:
            continue
        if frame.FrameID == "COMM" and frame.desc in ("", "Show Notes"):
            continue
        if cover and frame.FrameID == "APIC" and frame.type == PictureType.COVER_FRONT:
            continue
        kept.append(frame)
    kept.sort(key=lambda f: (f.FrameID in CHAPTER_FRAMES, f.FrameID == "APIC"))
    return kept


def render_tag(frames: Iterable[Frame], *, version: int, size: int | None = None) -> bytes:
    """An ID3v2 tag holding *frames* in the given order.

    With *size*, padding makes the tag exactly that long (it must fit); otherwise the
    tag gets :data:`PADDING` bytes of room.
    """
    return wrap_tag(encode_frames(frames, version=version), version=version, size=size)


def encode_frames(frames: Iterable[Frame], *, version: int) -> bytes:
    """*frames* encoded for ID3v2.*version*, in the given order (not mutagen's).

    Frames that need no conversion for *version* (fetcher's own single-value text
    frames, chapters made of them) are encoded directly; the others (a host's frames,
    pictures, comments) go through mutagen's conversion and frame writer. Both give
    the same bytes (``tests/test_tagging.py`` compares them); the direct way is most
    of a new episode's tagging time saved.
    """
    return _encode_all(list(frames), version, allow_direct=True)


def encode_frames_by_mutagen(frames: Iterable[Frame], *, version: int) -> bytes:
    """:func:`encode_frames` with every frame converted and written by mutagen (the
    reference the direct encoding is tested against)."""
    return _encode_all(list(frames), version, allow_direct=False)


def _encode_all(frames: list[Frame], version: int, *, allow_direct: bool) -> bytes:
    direct = {id(f) for f in frames if allow_direct and _direct(f, version)}
    slow = [f for f in frames if id(f) not in direct]
    converted = _converted(slow, version) if slow else {}
    config = ID3SaveConfig(version, "/")
    data = bytearray()
    seen: set[str] = set()
    for frame in frames:
        key = frame.HashKey
        if key in seen:
            continue
        seen.add(key)
        if key in converted:
            data += _encode(converted[key], config, version)
        elif id(frame) in direct:
            data += _encode_direct(frame, version)
    return bytes(data)


def _converted(frames: list[Frame], version: int) -> dict[str, Frame]:
    """*frames* converted by mutagen for *version*, by HashKey."""
    holder = ID3()
    for frame in frames:
        holder.add(frame)
    if version == 3:
        holder.update_to_v23()
    else:
        holder.update_to_v24()
    return {frame.HashKey: frame for frame in frames_in_order(holder, frames)}


#: Text frames ID3v2.3 does not have (mutagen converts or drops them).
_V24_ONLY = frozenset({"TDRC", "TDRL", "TDTG", "TDOR", "TDEN", "TMOO", "TPRO", "TSOA",
                       "TSOP", "TSOT", "TSST", "TIPL", "TMCL"})
#: Text frames ID3v2.4 does not have.
_V23_ONLY = frozenset({"TYER", "TDAT", "TIME", "TORY", "TRDA", "TSIZ"})
_CODECS = {Encoding.LATIN1: ("latin-1", b"\x00"), Encoding.UTF16: ("utf-16", b"\x00\x00")}


def _direct(frame: Any, version: int) -> bool:
    """True for a frame :func:`_encode_direct` writes exactly as mutagen would."""
    kind = type(frame)
    if kind is CHAP:
        return all(_direct(sub, version) for sub in frame.sub_frames.values())
    if kind is WXXX:
        return bool(frame.encoding == Encoding.LATIN1)
    return bool(kind in _PLAIN_TEXT and frame.encoding in _CODECS
                and len(frame.text) == 1 and "\x00" not in frame.text[0]
                and frame.FrameID not in (_V24_ONLY if version == 3 else _V23_ONLY))


def _encode_direct(frame: Any, version: int) -> bytes:
    if frame.FrameID == "CHAP":
        body = frame.element_id.encode("latin-1") + b"\x00" + struct.pack(
            ">4I", frame.start_time, frame.end_time, frame.start_offset, frame.end_offset)
        body += b"".join(_encode_direct(sub, version) for sub in frame.sub_frames.values())
        return _frame_header("CHAP", len(body), version) + bytes(body)
    if frame.FrameID == "WXXX":
        return _encode(frame, ID3SaveConfig(version, "/"), version)
    text = frame.text[0]
    if not text:
        return b""  # as mutagen: an empty text frame is not written
    codec, terminator = _CODECS[frame.encoding]
    body = bytes([frame.encoding]) + text.encode(codec) + terminator
    return _frame_header(frame.FrameID, len(body), version) + bytes(body)


def _encode(frame: Any, config: ID3SaveConfig, version: int) -> bytes:
    """One frame's bytes. URL frames (and chapters, which may hold one) are encoded
    here: mutagen ends a URL with a NUL that some readers (eyeD3) keep as part of it."""
    if frame.FrameID == "CHAP":
        body = frame.element_id.encode("latin-1") + b"\x00" + struct.pack(
            ">4I", frame.start_time, frame.end_time, frame.start_offset, frame.end_offset)
        body += b"".join(_encode(sub, config, version) for sub in frame.sub_frames.values())
        return bytes(_frame_header("CHAP", len(body), version) + body)
    if frame.FrameID == "WXXX":
        body = (bytes([Encoding.LATIN1]) + frame.desc.encode("latin-1", "replace") + b"\x00"
                + frame.url.encode("latin-1", "replace"))
        return bytes(_frame_header("WXXX", len(body), version) + body)
    if frame.FrameID.startswith("W"):
        body = frame.url.encode("latin-1", "replace")
        return bytes(_frame_header(frame.FrameID, len(body), version) + body)
    encoded: bytes = save_frame(frame, config=config)
    return encoded


def _frame_header(frame_id: str, size: int, version: int) -> bytes:
    if version == 4:
        size_bytes = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F,
                            size & 0x7F])
    else:
        size_bytes = struct.pack(">I", size)
    return frame_id.encode("ascii") + size_bytes + b"\x00\x00"


def wrap_tag(data: bytes, *, version: int, size: int | None = None) -> bytes:
    """Header + encoded frames + padding; see :func:`render_tag`."""
    needed = len(data) + 10
    total = size if size is not None else needed + PADDING
    if total < needed:
        raise ValueError("tag does not fit")
    return id3v2_header(total, version) + data + bytes(total - needed)


def frames_in_order(holder: ID3, order: Iterable[Frame]) -> list[Frame]:
    """The converted frames of *holder*, in the order of the original *order*."""
    result: list[Frame] = []
    for original in order:
        converted = holder.get(original.HashKey)
        if converted is not None:
            result.append(converted)
    return result


#: Room beyond fetcher's own frames for the host frames that are kept, which can grow
#: when they are converted to ID3v2.3 (UTF-8 text becomes UTF-16).
HOST_SLACK = 4 * 1024


def reserve_for(
    episode: Episode,
    settings: TagSettings,
    cover: bytes | None,
    images: Mapping[str, bytes],
) -> int:
    """Bytes to keep free at the start of a download so that the final tag fits there.

    Chapter end times do not change a frame's size, so the tag can be sized before the
    audio's duration is known. Host frames that are kept come from the host's own tag,
    which sits in that room too.
    """
    chapters, _ = normalise_chapters(episode.chapters)
    base_url = image_base(episode, settings)
    frames = [*metadata_frames(episode, cover, version=settings.id3_version),
              *chapter_frames(_ended(chapters), settings, images, base_url)]
    return len(render_tag(frames, version=settings.id3_version)) + HOST_SLACK


def _ended(chapters: list[Chapter]) -> list[Chapter]:
    """Chapters with an end everywhere (the last one's is a stand-in of the same size)."""
    return [c if c.end_ms is not None else dataclasses.replace(c, end_ms=c.start_ms + 1)
            for c in chapters]
