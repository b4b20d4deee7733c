"""Writing a tag into a file: in place when it fits, else through a rewrite.

The new tag is written over the old one when it fits (padding absorbs growth), so a
re-tag writes only the tag; otherwise the file is rewritten through a temporary
sibling, fsynced and renamed. An in-place write on an archived file goes through a
journal (:mod:`fetcher.journal`) so that a crash can leave neither a torn tag nor a tag
its manifest row does not name.
mutagen's errors are translated into :class:`~fetcher.errors.TagError` here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fetcher.audio import ID3V1_SIZE, id3v2_size
from fetcher.errors import TagError
from fetcher.failpoints import failpoint
from fetcher.journal import (
    TEMP_SUFFIX,
    journal_name,
    write_journal,
    write_replacement_journal,
)
from fetcher.model import Episode
from fetcher.safeio import fsync_directory
from fetcher.settings import TagSettings
from fetcher.tagging.frames import (
    OwnFrame,
    chapter_frames,
    encode_frames,
    host_frames,
    metadata_frames,
    wrap_tag,
)
from fetcher.tagging.spec import DURATION_TOLERANCE_MS, final_chapters, image_base

if TYPE_CHECKING:
    from mutagen.id3 import ID3

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Tagged:
    """What :func:`write_tags` did."""

    tag_bytes: int
    written_bytes: int
    in_place: bool
    chapters: int
    #: SHA-256 of the whole tag written (what :func:`fetcher.audio.tag_sha256` reads back).
    tag_sha256: str = ""
    #: The journal of an in-place write on an archived file, left for the caller to
    #: finish (:func:`fetcher.journal.finish_journal`) once the manifest row that names
    #: this tag is committed; until then a crash rolls the tag back.
    journal: Path | None = None


#: How many ID3v2 tags in a row at the start of a file are read.
MAX_LEADING_TAGS = 8


def _leading_tags(fd: int, path: Path) -> tuple[list[ID3], int]:
    """The ID3v2 tags at the start of the open file *fd* (*path*) and the bytes they
    occupy together.

    A partial download starts with fetcher's empty placeholder tag followed by the
    host's tag; both belong to the region the new tag may be written into. (Read, not
    mapped: the placeholder is a hole, and on a full tmpfs a mapped hole is a SIGBUS.)
    """
    tags: list[ID3] = []
    region = 0
    for _ in range(MAX_LEADING_TAGS):
        header = os.pread(fd, 10, region)
        size = id3v2_size(header)
        if size is None:
            break
        tag = header + os.pread(fd, size - 10, region + 10)
        if len(tag) < size:
            break  # a tag longer than the file: not a tag we can replace safely
        region += size
        if tag[10:].strip(b"\x00"):  # not an empty tag (fetcher's placeholder): read it
            from mutagen.id3 import ID3

            try:
                tags.append(ID3(io.BytesIO(tag)))
            except Exception as exc:  # noqa: BLE001 - mutagen raises many kinds
                log.warning("%s: an existing ID3 tag is unreadable (%s); replaced", path, exc)
    return tags, region


def _has_id3v1(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size >= ID3V1_SIZE and os.pread(fd, 3, size - ID3V1_SIZE) == b"TAG"


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
    file: BinaryIO | None = None,
    metadata: Sequence[OwnFrame] | None = None,
) -> Tagged:
    """Tag *path* for *episode*; raises TagError. See the module docstring.

    With ``in_place=False`` the file is always rewritten through a temporary sibling
    (for files fetcher does not keep a journal for). *file* is *path* already open for
    reading and writing (``r+b``), so that a caller that has just read it need not
    open it again; after a rewrite it refers to the old file, and is only to be closed.
    *metadata*: the episode's metadata frames for this *cover* and version, rendered
    already (by :func:`~fetcher.tagging.frames.size_tag`). The tag is on disk (fsynced)
    when this returns.
    """
    try:
        settings = settings or TagSettings()
        own = metadata if metadata is not None else metadata_frames(
            episode, cover, version=settings.id3_version)
        if file is not None:
            return _write_tags(path, file, episode, duration_ms, settings, cover, own,
                               images or {}, journal_dir, in_place)
        with path.open("r+b") as opened:
            return _write_tags(path, opened, episode, duration_ms, settings, cover, own,
                               images or {}, journal_dir, in_place)
    except TagError:
        raise
    except OSError as exc:
        raise TagError(path, f"cannot write tags: {exc.strerror or exc}") from exc
    except Exception as exc:
        raise TagError(path, f"cannot write tags: {type(exc).__name__}: {exc}") from exc


def _write_tags(
    path: Path,
    file: BinaryIO,
    episode: Episode,
    duration_ms: int | None,
    settings: TagSettings,
    cover: bytes | None,
    metadata: Sequence[OwnFrame],
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
    existing, region = _leading_tags(file.fileno(), path)
    strip_v1 = _has_id3v1(file.fileno())
    base_url = image_base(episode, settings)
    version = settings.id3_version
    host = host_frames(existing, replace_chapters=bool(chapters),
                       cover=cover is not None) if existing else []
    # Pictures go last (encode_frames): players read the small frames first.
    encoded = encode_frames([*metadata, *host,
                             *chapter_frames(chapters, settings, images, base_url)],
                            version=version)
    written_chapters = sum(1 for c in chapters if c.toc or settings.hidden_chapters == "untoc")

    if in_place and region and len(encoded) + 10 <= region:
        tag = wrap_tag(encoded, version=version, size=region)
        digest = _sha256(tag)
        journal = _overwrite_in_place(path, file, tag, strip_v1, journal_dir,
                                      guid=episode.guid, tag_sha256=digest)
        return Tagged(len(tag), len(tag), True, written_chapters, digest, journal)

    tag = wrap_tag(encoded, version=version)
    digest = _sha256(tag)
    journal = _rewrite(path, file, tag, region, strip_v1, journal_dir, guid=episode.guid,
                       tag_sha256=digest)
    return Tagged(len(tag), path.stat().st_size, False, written_chapters, digest, journal)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _overwrite_in_place(path: Path, file: BinaryIO, tag: bytes, strip_v1: bool,
                        journal_dir: Path | None, *, guid: str = "",
                        tag_sha256: str = "") -> Path | None:
    """Write *tag* over the start of *path*; with *journal_dir*, returns the journal,
    which stays until the caller has recorded the new tag."""
    journal = None
    if journal_dir is not None:
        journal = write_journal(journal_dir, path, len(tag), guid=guid,
                                tag_sha256=tag_sha256)
        failpoint("tag-journaled")
    file.seek(0)
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
        failpoint("tag-written")
    return journal


def _rewrite(path: Path, source: BinaryIO, tag: bytes, region: int, strip_v1: bool,
             temp_dir: Path | None = None, *, guid: str = "",
             tag_sha256: str = "") -> Path | None:
    """Write tag + audio (from *source*, *path* open) into a temporary file, then rename
    it over *path*.

    An archived file's temporary lives in *temp_dir* (the archive's journal directory,
    on the same filesystem), where the next run removes what a crash left; otherwise
    beside *path*. An archived file is replaced under a journal that keeps the old
    file until the caller has recorded the new tag (returned, to be finished then).
    """
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        temporary = temp_dir / (journal_name(path) + TEMP_SUFFIX)
    else:
        temporary = path.with_name(path.name + TEMP_SUFFIX)
    size = source.seek(0, os.SEEK_END) - region - (ID3V1_SIZE if strip_v1 else 0)
    try:
        with temporary.open("wb") as target:
            target.write(tag)
            source.seek(region)
            remaining = size
            while remaining > 0:
                chunk = source.read(min(1 << 20, remaining))
                if not chunk:
                    break
                target.write(chunk)
                remaining -= len(chunk)
                failpoint("retag-rewriting")
            target.flush()
            os.fsync(target.fileno())
        shutil.copymode(path, temporary)
        journal = None
        if temp_dir is not None:
            journal = write_replacement_journal(temp_dir, path, guid=guid,
                                                column="tag_sha256", digest=tag_sha256)
        temporary.replace(path)
        if temp_dir is not None:
            fsync_directory(path.parent)
            failpoint("retag-rewritten")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    return journal


def read_chapters(path: Path) -> list[tuple[int, int, str]]:
    """(start_ms, end_ms, title) of the CHAP frames in *path*, in file order."""
    from mutagen.id3 import ID3, ID3NoHeaderError

    try:
        tags = ID3(path)
    except ID3NoHeaderError:
        return []
    except Exception as exc:
        raise TagError(path, f"cannot read tags: {exc}") from exc
    result = []
    for frame in tags.getall("CHAP"):
        title = frame.sub_frames.get("TIT2")
        result.append((frame.start_time, frame.end_time, str(title.text[0]) if title else ""))
    return result


def read_guid(path: Path) -> str | None:
    """The episode guid fetcher wrote into *path*'s TGID frame, if any."""
    from mutagen.id3 import ID3, ID3NoHeaderError

    try:
        tags = ID3(path)
    except ID3NoHeaderError:
        return None
    except Exception as exc:
        raise TagError(path, f"no readable tag ({exc})") from exc
    frame = tags.get("TGID")
    return str(frame) if frame is not None and str(frame) else None
