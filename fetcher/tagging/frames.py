"""The frames an Episode becomes, and the tag they make, in fetcher's own order.

- ID3v2.3, text in UTF-16 with BOM: ffmpeg misreads CHAP sub-frame sizes in v2.4, and
  Apple Podcasts has failed on long v2.4 chapter titles.
- mutagen sorts frames by size when it saves; ffprobe lists chapters in file order.
  So the tag is assembled here frame by frame in a fixed order: text frames, host
  frames, CTOC, CHAP in start order, pictures.
- fetcher's own frames are encoded directly (:mod:`fetcher.tagging.encode`): no mutagen
  objects, which validate every attribute as it is set. The frames kept from a host's
  own tag go through mutagen's conversion and frame writer; mutagen is imported only
  when a file has such a tag.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

from fetcher.audio import id3v2_header
from fetcher.model import Chapter, Episode, normalise_chapters
from fetcher.settings import TagSettings
from fetcher.tagging import encode
from fetcher.tagging.spec import (
    image_base,
    latin1_url,
    picture_mime,
    public_url,
    resolve_url,
)

if TYPE_CHECKING:
    from mutagen.id3 import ID3, Frame

#: Room left in every tag we write, so later re-tags fit in place.
PADDING = 8 * 1024
#: Frames fetcher owns; a host's copies of these are replaced, every other frame kept.
OWNED = ("TIT2", "TALB", "TPE1", "TPE2", "TRCK", "TCON", "TDES", "TGID", "PCST", "WOAF",
         "TPOS", "TCOM", "IPLS", "TIPL", "WFED")
#: podcast:person roles written as composers (TCOM); every person goes into IPLS.
COMPOSER_ROLES = frozenset({"composer", "music", "songwriter"})
DATE_FRAMES = ("TDRC", "TDRL", "TYER", "TDAT", "TIME", "TORY", "TDOR")
CHAPTER_FRAMES = ("CHAP", "CTOC")


@dataclasses.dataclass(frozen=True, slots=True)
class OwnFrame:
    """One of fetcher's own frames, encoded."""

    #: What tells copies of a frame apart (mutagen's ``HashKey``): a host frame with the
    #: same key is not written.
    key: str
    #: The whole frame; empty for an empty text frame, which is not written (as mutagen).
    data: bytes

    @property
    def picture(self) -> bool:
        return self.key.startswith("APIC:")


def metadata_frames(episode: Episode, cover: bytes | None, *,
                    version: int = 3) -> list[OwnFrame]:
    """The episode's own frames for ID3v2.*version*, in the order they are written."""
    text, latin1 = encode.text_frame, encode.LATIN1

    def own(frame_id: str, data: bytes) -> OwnFrame:
        return OwnFrame(frame_id, data)

    frames = [
        own("TIT2", text("TIT2", episode.title, version)),
        own("TALB", text("TALB", episode.show_name, version)),
        own("TPE1", text("TPE1", ", ".join(episode.hosts) if episode.hosts
                         else episode.show_name, version)),
        own("TPE2", text("TPE2", episode.show_name, version)),
    ]
    if isinstance(episode.episode, int):
        frames.append(own("TRCK", text("TRCK", str(episode.episode), version, latin1)))
    if episode.season is not None:
        frames.append(own("TPOS", text("TPOS", str(episode.season), version, latin1)))
    composers = [p.name for p in episode.persons if p.role in COMPOSER_ROLES]
    if composers:
        frames.append(own("TCOM", text("TCOM", ", ".join(composers), version)))
    if episode.persons:
        frames.append(own("TIPL" if version == 4 else "IPLS", encode.people_frame(
            [(p.role, p.name) for p in episode.persons], version)))
    when = episode.date.astimezone(UTC)
    if version == 4:
        frames.append(own("TDRC", text("TDRC", f"{when:%Y-%m-%dT%H:%M:%S}", version, latin1)))
    else:
        frames += [
            own("TYER", text("TYER", f"{when:%Y}", version, latin1)),
            own("TDAT", text("TDAT", f"{when:%d%m}", version, latin1)),
            own("TIME", text("TIME", f"{when:%H%M}", version, latin1)),
        ]
    frames += [
        own("TCON", text("TCON", "Podcast", version)),
        own("PCST", encode.podcast_flag_frame(version)),
        own("TGID", text("TGID", latin1_url(episode.guid), version, latin1)),
    ]
    page = resolve_url(episode.page_url, None) if episode.page_url else None
    if page:
        frames.append(own("WOAF", encode.url_frame("WOAF", latin1_url(page), version)))
    feed = public_url(episode.feed_url)
    if feed:
        frames.append(own("WFED", encode.url_frame("WFED", latin1_url(feed), version)))
    if episode.description:
        frames.append(own("COMM::eng", encode.comment_frame("", episode.description, version)))
        frames.append(own("TDES", text("TDES", episode.description, version)))
    if episode.show_notes:
        frames.append(own("COMM:Show Notes:eng",
                          encode.comment_frame("Show Notes", episode.show_notes, version)))
    if cover is not None:
        mime = picture_mime(cover)
        if mime is not None:
            frames.append(own("APIC:", encode.picture_frame(mime, encode.COVER_FRONT, cover,
                                                            version)))
    return frames


def chapter_frames(
    chapters: list[Chapter],
    settings: TagSettings,
    images: Mapping[str, bytes],
    base_url: str | None,
) -> list[OwnFrame]:
    """CTOC first, then one CHAP per chapter in start order."""
    version = settings.id3_version
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
    chaps: list[OwnFrame] = []
    toc_ids: list[str] = []
    for index, chapter in enumerate(written):
        element_id = f"chp{index}"
        assert chapter.end_ms is not None, "chapters are ended before tagging"
        sub_frames = encode.text_frame("TIT2", chapter.title, version)
        if chapter.url:
            url = resolve_url(chapter.url, base_url)
            if url:
                sub_frames += encode.user_url_frame(latin1_url(url), version)
        if settings.chapter_images and chapter.img:
            image_url = resolve_url(chapter.img, base_url)
            data = images.get(image_url) if image_url else None
            mime = picture_mime(data) if data else None
            if data is not None and mime is not None:
                sub_frames += encode.picture_frame(mime, encode.OTHER_PICTURE, data, version,
                                                   encode.LATIN1)
        chaps.append(OwnFrame(f"CHAP:{element_id}", encode.chapter_frame(
            element_id, chapter.start_ms, chapter.end_ms, sub_frames, version)))
        if chapter.toc:
            toc_ids.append(element_id)
    return [OwnFrame("CTOC:toc", encode.toc_frame("toc", toc_ids, version)), *chaps]


def host_frames(
    existing: Iterable[ID3], *, replace_chapters: bool, cover: bool
) -> list[Frame]:
    """The frames of the tags already in the file that fetcher keeps (first copy wins)."""
    from mutagen.id3 import PictureType

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


def render_tag(frames: Sequence[OwnFrame | Frame], *, version: int,
               size: int | None = None) -> bytes:
    """An ID3v2 tag holding *frames* in the given order (pictures moved last).

    With *size*, padding makes the tag exactly that long (it must fit); otherwise the
    tag gets :data:`PADDING` bytes of room.
    """
    return wrap_tag(encode_frames(frames, version=version), version=version, size=size)


def encode_frames(frames: Sequence[OwnFrame | Frame], *, version: int) -> bytes:
    """*frames* encoded for ID3v2.*version* in the given order (not mutagen's), pictures
    last, the first frame of each key only; a host's frames converted for *version* by
    mutagen (one that ID3v2.*version* does not have is dropped).

    fetcher's own frames come first, so they win: a host's picture with an empty
    description (the key of fetcher's cover) is left out when there is a cover.
    """
    ordered = sorted(frames, key=lambda f: _key(f).startswith("APIC:"))
    seen: set[str] = set()
    kept: list[OwnFrame | Frame] = []
    for frame in ordered:
        key = _key(frame)
        if key not in seen:
            seen.add(key)
            kept.append(frame)
    host = [f for f in kept if not isinstance(f, OwnFrame)]
    converted = _converted(host, version) if host else {}
    data = bytearray()
    for frame in kept:
        if isinstance(frame, OwnFrame):
            data += frame.data
        elif (new := converted.get(id(frame))) is not None:
            data += _encode_host(new, version)
    return bytes(data)


def _key(frame: OwnFrame | Frame) -> str:
    key: str = frame.key if isinstance(frame, OwnFrame) else frame.HashKey
    return key


def _converted(frames: list[Frame], version: int) -> dict[int, Frame]:
    """*frames* converted by mutagen for *version*, by the id of the original."""
    from mutagen.id3 import ID3

    holder = ID3()
    for frame in frames:
        holder.add(frame)
    if version == 3:
        holder.update_to_v23()
    else:
        holder.update_to_v24()
    result: dict[int, Frame] = {}
    for original in frames:
        converted = holder.get(original.HashKey)
        if converted is not None:
            result[id(original)] = converted
    return result


def _encode_host(frame: Any, version: int) -> bytes:
    """One host frame's bytes. URL frames (and chapters, which may hold one) are encoded
    here: mutagen ends a URL with a NUL that some readers (eyeD3) keep as part of it."""
    from mutagen.id3._tags import save_frame  # the one frame encoder; version pinned
    from mutagen.id3._util import ID3SaveConfig

    if frame.FrameID == "CHAP":
        subs = b"".join(_encode_host(sub, version) for sub in frame.sub_frames.values())
        return encode.frame("CHAP", frame.element_id.encode("latin-1") + b"\x00"
                            + _times(frame) + subs, version)
    if frame.FrameID == "WXXX":
        body = (bytes([encode.LATIN1]) + frame.desc.encode("latin-1", "replace") + b"\x00"
                + frame.url.encode("latin-1", "replace"))
        return encode.frame("WXXX", body, version)
    if frame.FrameID.startswith("W"):
        return encode.url_frame(frame.FrameID, frame.url, version)
    encoded: bytes = save_frame(frame, config=ID3SaveConfig(version, "/"))
    return encoded


def _times(frame: Any) -> bytes:
    return struct.pack(">4I", frame.start_time, frame.end_time, frame.start_offset,
                       frame.end_offset)


def wrap_tag(data: bytes, *, version: int, size: int | None = None) -> bytes:
    """Header + encoded frames + padding; see :func:`render_tag`."""
    needed = len(data) + 10
    total = size if size is not None else needed + PADDING
    if total < needed:
        raise ValueError("tag does not fit")
    return id3v2_header(total, version) + data + bytes(total - needed)


#: Room beyond fetcher's own frames for the host frames that are kept, which can grow
#: when they are converted to ID3v2.3 (UTF-8 text becomes UTF-16).
HOST_SLACK = 4 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class SizedTag:
    """A tag sized before its audio arrives (see :func:`size_tag`)."""

    #: Bytes to keep free at the start of the download for it.
    reserve: int
    #: The episode's own metadata frames, which the audio does not change: the final
    #: tag is written with these, not rendered again.
    metadata: tuple[OwnFrame, ...]


def size_tag(
    episode: Episode,
    settings: TagSettings,
    cover: bytes | None,
    images: Mapping[str, bytes],
) -> SizedTag:
    """The room to keep at the start of a download so that the final tag fits there.

    Chapter end times do not change a frame's size, so the tag can be sized before the
    audio's duration is known. Host frames that are kept come from the host's own tag,
    which sits in that room too.
    """
    chapters, _ = normalise_chapters(episode.chapters)
    if chapters and chapters[-1].end_ms is None:  # a stand-in end, of the same size
        chapters[-1] = dataclasses.replace(chapters[-1], end_ms=chapters[-1].start_ms + 1)
    metadata = tuple(metadata_frames(episode, cover, version=settings.id3_version))
    frames = [*metadata, *chapter_frames(chapters, settings, images,
                                         image_base(episode, settings))]
    return SizedTag(sum(len(f.data) for f in frames) + 10 + PADDING + HOST_SLACK, metadata)


def reserve_for(episode: Episode, settings: TagSettings, cover: bytes | None,
                images: Mapping[str, bytes]) -> int:
    """:attr:`SizedTag.reserve` of :func:`size_tag`."""
    return size_tag(episode, settings, cover, images).reserve
