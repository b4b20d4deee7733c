"""The tag stage, the only code that touches ID3.

:func:`write_tags` gives an MP3 an ID3v2.3 tag built from an :class:`Episode`: metadata
frames, a cover, and CHAP/CTOC chapters in time order. Design facts:

- ID3v2.3, text in UTF-16 with BOM: ffmpeg misreads CHAP sub-frame sizes in v2.4, and
  Apple Podcasts has failed on long v2.4 chapter titles.
- mutagen sorts frames by size when it saves; ffprobe lists chapters in file order.
  So the tag is assembled here frame by frame (mutagen encodes each frame) in a fixed
  order: text frames, host frames, CTOC, CHAP in start order, pictures.
- The new tag is written over the old one when it fits (padding absorbs growth), so a
  re-tag writes only the tag; otherwise the file is rewritten through a temporary
  sibling, fsynced and renamed. An in-place write on an archived file goes through a
  journal so that a crash cannot leave a torn tag (see :func:`recover_journals`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from mutagen.id3 import (
    APIC,
    CHAP,
    COMM,
    CTOC,
    ID3,
    PCST,
    TALB,
    TCON,
    TDAT,
    TDES,
    TGID,
    TIME,
    TIT2,
    TPE1,
    TPE2,
    TRCK,
    TYER,
    WOAF,
    WXXX,
    CTOCFlags,
    Encoding,
    Frame,
    ID3NoHeaderError,
    PictureType,
)
from mutagen.id3._tags import save_frame  # the one frame encoder; version pinned
from mutagen.id3._util import ID3SaveConfig

from fetcher.audio import ID3V1_SIZE, id3v2_header, id3v2_size
from fetcher.errors import TagError
from fetcher.failpoints import failpoint
from fetcher.model import Chapter, Episode, normalise_chapters
from fetcher.settings import TagSettings as TagSettings

log = logging.getLogger(__name__)

#: Room left in every tag we write, so later re-tags fit in place.
PADDING = 8 * 1024
NO_OFFSET = 0xFFFFFFFF
#: Frames fetcher owns; a host's copies of these are replaced, every other frame kept.
OWNED = ("TIT2", "TALB", "TPE1", "TPE2", "TRCK", "TCON", "TDES", "TGID", "PCST", "WOAF")
DATE_FRAMES = ("TDRC", "TDRL", "TYER", "TDAT", "TIME", "TORY", "TDOR")
CHAPTER_FRAMES = ("CHAP", "CTOC")
DURATION_TOLERANCE_MS = 2_000


@dataclass(frozen=True, slots=True)
class Tagged:
    """What :func:`write_tags` did."""

    tag_bytes: int
    written_bytes: int
    in_place: bool
    chapters: int


# --- pictures -----------------------------------------------------------------------


def picture_mime(data: bytes) -> str | None:
    """``image/jpeg`` or ``image/png`` by magic bytes, else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


def cover_url(episode: Episode, settings: TagSettings) -> str | None:
    """The absolute cover URL: ``header_image`` against ``image_base_url`` or the page."""
    if not settings.cover or not episode.header_image:
        return None
    return resolve_url(episode.header_image, image_base(episode, settings))


def chapter_image_urls(episode: Episode, settings: TagSettings) -> list[str]:
    if not settings.chapter_images:
        return []
    base = image_base(episode, settings)
    urls = (resolve_url(c.img, base) for c in episode.chapters if c.img)
    return sorted({u for u in urls if u})


def resolve_url(reference: str, base: str | None) -> str | None:
    """An absolute http(s) URL for *reference*, or None."""
    with contextlib.suppress(ValueError):
        absolute = urljoin(base, reference) if base else reference
        if urlsplit(absolute).scheme.lower() in ("http", "https"):
            return absolute
    return None


def image_base(episode: Episode, settings: TagSettings) -> str | None:
    """What relative image paths resolve against: the setting, else the page's origin."""
    return settings.image_base_url or _origin(episode.page_url)


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}/"
    return None


def _latin1_url(url: str) -> str:
    """Percent-encode what Latin-1 cannot carry (URL frames are Latin-1)."""
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~")


# --- building the frames ------------------------------------------------------------


def final_chapters(episode: Episode, duration_ms: int | None) -> list[Chapter]:
    chapters, warnings = normalise_chapters(episode.chapters, duration_ms)
    for warning in warnings:
        log.warning("%s: %s", episode.label, warning)
    return chapters


def _text(frame: type[Frame], value: str) -> Frame:
    return frame(encoding=Encoding.UTF16, text=[value])


def metadata_frames(episode: Episode, cover: bytes | None) -> list[Frame]:
    """The episode's own frames, in the order they are written."""
    frames: list[Frame] = [
        _text(TIT2, episode.title),
        _text(TALB, episode.show_name),
        _text(TPE1, ", ".join(episode.hosts) if episode.hosts else episode.show_name),
        _text(TPE2, episode.show_name),
    ]
    if episode.episode is not None:
        frames.append(TRCK(encoding=Encoding.LATIN1, text=[str(episode.episode)]))
    when = episode.date.astimezone(UTC)
    frames += [
        TYER(encoding=Encoding.LATIN1, text=[f"{when:%Y}"]),
        TDAT(encoding=Encoding.LATIN1, text=[f"{when:%d%m}"]),
        TIME(encoding=Encoding.LATIN1, text=[f"{when:%H%M}"]),
        _text(TCON, "Podcast"),
        PCST(value=0),
        TGID(encoding=Encoding.LATIN1, text=[_latin1_url(episode.guid)]),
    ]
    page = resolve_url(episode.page_url, None) if episode.page_url else None
    if page:
        frames.append(WOAF(url=_latin1_url(page)))
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
    chaps: list[Frame] = []
    toc_ids: list[str] = []
    for index, chapter in enumerate(written):
        element_id = f"chp{index}"
        assert chapter.end_ms is not None, "chapters are ended before tagging"
        sub_frames: list[Frame] = [_text(TIT2, chapter.title)]
        if chapter.url:
            url = resolve_url(chapter.url, base_url)
            if url:
                sub_frames.append(WXXX(encoding=Encoding.LATIN1, desc="", url=_latin1_url(url)))
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
    """*frames* encoded for ID3v2.*version*, in the given order (not mutagen's)."""
    frames = list(frames)
    holder = ID3()
    for frame in frames:
        holder.add(frame)
    if version == 3:
        holder.update_to_v23()
    else:
        holder.update_to_v24()
    config = ID3SaveConfig(version, "/")
    # ``holder`` converted the frames; keep our order by walking the inputs' keys.
    data = bytearray()
    seen: set[str] = set()
    for frame in frames_in_order(holder, frames):
        key = frame.HashKey
        if key in seen:
            continue
        seen.add(key)
        data += save_frame(frame, config=config)
    return bytes(data)


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
    frames = [*metadata_frames(episode, cover),
              *chapter_frames(_ended(chapters), settings, images, base_url)]
    return len(render_tag(frames, version=settings.id3_version)) + HOST_SLACK


def _ended(chapters: list[Chapter]) -> list[Chapter]:
    """Chapters with an end everywhere (the last one's is a stand-in of the same size)."""
    return [c if c.end_ms is not None else dataclasses.replace(c, end_ms=c.start_ms + 1)
            for c in chapters]


# --- reading and writing files ------------------------------------------------------


#: How many ID3v2 tags in a row at the start of a file are read.
MAX_LEADING_TAGS = 8


def _leading_tags(path: Path) -> tuple[list[ID3], int]:
    """The ID3v2 tags at the start of *path* and the bytes they occupy together.

    A partial download starts with fetcher's empty placeholder tag followed by the
    host's tag; both belong to the region the new tag may be written into.
    """
    tags: list[ID3] = []
    region = 0
    with path.open("rb") as file:
        for _ in range(MAX_LEADING_TAGS):
            file.seek(region)
            header = file.read(10)
            size = id3v2_size(header)
            if size is None:
                break
            data = header + file.read(size - 10)
            if len(data) < size:
                break  # a tag longer than the file: not a tag we can replace safely
            region += size
            if any(data[10:]):
                try:
                    tags.append(ID3(io.BytesIO(data)))
                except Exception as exc:  # noqa: BLE001 - mutagen raises many kinds
                    log.warning("%s: an existing ID3 tag is unreadable (%s); replaced", path, exc)
    return tags, region


def _has_id3v1(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        if file.tell() < ID3V1_SIZE:
            return False
        file.seek(-ID3V1_SIZE, os.SEEK_END)
        return file.read(3) == b"TAG"


def write_tags(
    path: Path,
    episode: Episode,
    *,
    duration_ms: int | None,
    settings: TagSettings | None = None,
    cover: bytes | None = None,
    images: Mapping[str, bytes] | None = None,
    journal_dir: Path | None = None,
    in_place: bool = True,
) -> Tagged:
    """Tag *path* for *episode*; raises TagError. See the module docstring.

    With ``in_place=False`` the file is always rewritten through a temporary sibling
    (for files fetcher does not keep a journal for).
    """
    try:
        return _write_tags(path, episode, duration_ms, settings or TagSettings(), cover,
                           images or {}, journal_dir, in_place)
    except TagError:
        raise
    except OSError as exc:
        raise TagError(path, f"cannot write tags: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - mutagen's errors are not one family
        raise TagError(path, f"cannot write tags: {type(exc).__name__}: {exc}") from None


def _write_tags(
    path: Path,
    episode: Episode,
    duration_ms: int | None,
    settings: TagSettings,
    cover: bytes | None,
    images: Mapping[str, bytes],
    journal_dir: Path | None,
    in_place: bool,
) -> Tagged:
    declared = episode.declared_duration_s
    if (
        duration_ms is not None
        and declared is not None
        and abs(declared * 1000 - duration_ms) > DURATION_TOLERANCE_MS
    ):
        log.warning(
            "%s: the audio plays %.1f s but the document declares %.1f s",
            episode.label, duration_ms / 1000, declared,
        )
    chapters = final_chapters(episode, duration_ms)
    existing, region = _leading_tags(path)
    base_url = image_base(episode, settings)
    frames = [
        *metadata_frames(episode, cover),
        *host_frames(existing, replace_chapters=bool(chapters), cover=cover is not None),
        *chapter_frames(chapters, settings, images, base_url),
    ]
    # Pictures last: players read the small frames first.
    frames.sort(key=lambda f: f.FrameID == "APIC")
    version = settings.id3_version
    encoded = encode_frames(frames, version=version)
    strip_v1 = _has_id3v1(path)
    written_chapters = sum(1 for c in chapters if c.toc or settings.hidden_chapters == "untoc")

    if in_place and region and len(encoded) + 10 <= region:
        tag = wrap_tag(encoded, version=version, size=region)
        _overwrite_in_place(path, tag, strip_v1, journal_dir)
        return Tagged(len(tag), len(tag), True, written_chapters)

    tag = wrap_tag(encoded, version=version)
    _rewrite(path, tag, region, strip_v1)
    return Tagged(len(tag), path.stat().st_size, False, written_chapters)


def _overwrite_in_place(path: Path, tag: bytes, strip_v1: bool, journal_dir: Path | None) -> None:
    journal = None
    if journal_dir is not None:
        journal = _write_journal(journal_dir, path, len(tag))
        failpoint("tag-journaled")
    with path.open("r+b") as file:
        half = len(tag) // 2
        file.write(tag[:half])
        file.flush()
        failpoint("tag-torn")
        file.write(tag[half:])
        if strip_v1:
            file.seek(-ID3V1_SIZE, os.SEEK_END)
            file.truncate()
        file.flush()
        os.fsync(file.fileno())
    if journal is not None:
        journal.unlink()
        journal.with_suffix(".bytes").unlink()


def _rewrite(path: Path, tag: bytes, region: int, strip_v1: bool) -> None:
    """Write tag + audio into a temporary sibling, then rename it over *path*."""
    temporary = path.with_name(path.name + ".tagging")
    size = path.stat().st_size - region - (ID3V1_SIZE if strip_v1 else 0)
    try:
        with path.open("rb") as source, temporary.open("wb") as target:
            target.write(tag)
            source.seek(region)
            remaining = size
            while remaining > 0:
                chunk = source.read(min(1 << 20, remaining))
                if not chunk:
                    break
                target.write(chunk)
                remaining -= len(chunk)
            target.flush()
            os.fsync(target.fileno())
        shutil.copymode(path, temporary)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


# --- the journal that makes in-place writes crash-safe ------------------------------


def _write_journal(journal_dir: Path, path: Path, length: int) -> Path:
    journal_dir.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(str(path.resolve()).encode()).hexdigest()
    record = journal_dir / f"{name}.json"
    saved = journal_dir / f"{name}.bytes"
    with path.open("rb") as file:
        old = file.read(length)
    size = path.stat().st_size
    with saved.open("wb") as target:
        target.write(old)
        if size >= ID3V1_SIZE:
            with path.open("rb") as file:
                file.seek(-ID3V1_SIZE, os.SEEK_END)
                target.write(file.read())
        target.flush()
        os.fsync(target.fileno())
    temporary = record.with_suffix(".tmp")
    temporary.write_text(
        json.dumps({"path": str(path.resolve()), "head": len(old), "size": size}),
        encoding="utf-8",
    )
    with temporary.open("rb") as file:
        os.fsync(file.fileno())
    temporary.replace(record)
    _fsync_dir(journal_dir)
    return record


def recover_journals(journal_dir: Path) -> list[Path]:
    """Undo in-place tag writes that a crash interrupted; returns the files restored."""
    restored: list[Path] = []
    if not journal_dir.is_dir():
        return restored
    for record in sorted(journal_dir.glob("*.json")):
        saved = record.with_suffix(".bytes")
        try:
            info: dict[str, Any] = json.loads(record.read_text(encoding="utf-8"))
            data = saved.read_bytes()
            target = Path(info["path"])
            head, size = int(info["head"]), int(info["size"])
            if target.exists():
                with target.open("r+b") as file:
                    file.write(data[:head])
                    tail = data[head:]
                    if tail:
                        file.seek(size - len(tail))
                        file.write(tail)
                    file.truncate(size)
                    file.flush()
                    os.fsync(file.fileno())
                restored.append(target)
                log.warning("%s: an interrupted re-tag was rolled back", target)
        except (OSError, ValueError, KeyError) as exc:
            log.error("%s: cannot roll back an interrupted re-tag: %s", record, exc)
            continue
        record.unlink()
        with contextlib.suppress(FileNotFoundError):
            saved.unlink()
    return restored


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tag_fingerprint(episode: Episode, settings: TagSettings) -> str:
    """A hash of everything that goes into the tag, to notice metadata changes."""
    chapters = [
        [c.start_ms, c.end_ms, c.title, c.url, c.img, c.toc] for c in episode.chapters
    ]
    data = {
        "v": 1,
        "title": episode.title,
        "show": episode.show_name,
        "hosts": episode.hosts,
        "episode": episode.episode,
        "date": episode.date.isoformat(),
        "guid": episode.guid,
        "page": episode.page_url,
        "description": episode.description,
        "notes": episode.show_notes,
        "cover": cover_url(episode, settings),
        "chapters": chapters,
        "settings": [settings.id3_version, settings.cover, settings.image_base_url,
                     settings.chapter_images, settings.hidden_chapters],
    }
    encoded = json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


def read_chapters(path: Path) -> list[tuple[int, int, str]]:
    """(start_ms, end_ms, title) of the CHAP frames in *path*, in file order."""
    try:
        tags = ID3(path)
    except ID3NoHeaderError:
        return []
    except Exception as exc:  # noqa: BLE001
        raise TagError(path, f"cannot read tags: {exc}") from None
    result = []
    for frame in tags.getall("CHAP"):
        title = frame.sub_frames.get("TIT2")
        result.append((frame.start_time, frame.end_time, str(title.text[0]) if title else ""))
    return result
