"""Checking an archive against its manifest, repairing it, and rebuilding a lost manifest.

- :func:`verify_archive` re-hashes every archived file (tag and audio) and reports
  missing, truncated or altered files and stray temporary files; with ``repair`` an
  altered file is moved to ``.fetcher/damaged/`` (never deleted) and the next sync
  fetches its episode again.
- :func:`rebuild_manifest` makes a new manifest from the archived files' own tags when
  the old one is lost or damaged (it is moved aside, not deleted). The next sync
  re-tags each file in place, which fills in what the tags do not hold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fetcher.audio import file_digests, file_sha256
from fetcher.duration import measure_duration_ms
from fetcher.errors import ArchiveError, TagError
from fetcher.journal import recorded_in, recover_journals
from fetcher.safeio import fsync_directory, fsync_file
from fetcher.store import Archive
from fetcher.store.local import STATE_DIR, now_iso
from fetcher.store.manifest import Manifest, Record

log = logging.getLogger(__name__)


#: What a row says once ``verify --repair`` has moved its file aside.
REPAIRED = "moved aside by verify --repair"
#: Endings of temporary files that an interrupted write may leave under final names.
STRAY_SUFFIXES = (".tagging", ".tmp", ".part")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in an archive: an archived episode (``guid``) or a stray file."""

    path: str
    problem: str
    guid: str | None = None


def verify_archive(archive: Archive, *, repair: bool = False) -> list[Problem]:
    """Re-hash every archived file against the manifest; the problems found.

    With *repair*, a damaged file is moved to ``.fetcher/damaged/`` (never deleted) and
    its episode stays a problem (missing) until a sync fetches it again; stray
    temporary files are moved there too. Raises ArchiveError when *archive* is not an
    archive, ManifestError when its manifest cannot be read.
    """
    if not archive.exists:
        raise ArchiveError(f"{archive.root}: not a fetcher archive (no {STATE_DIR}/ here); "
                           "if its state was lost, 'fetcher verify --rebuild' adopts the "
                           "files by their tags")
    problems: list[Problem] = []
    with archive.lock(), Manifest.open(archive.manifest_path, create=False) as manifest:
        # An interrupted re-tag is undone first.
        recover_journals(archive.journal_dir, check=archive.existing_target,
                         committed=recorded_in(manifest.get))
        damaged: list[tuple[Record, str]] = []
        for record in manifest.iter_archived():
            problem = _check(archive, record)
            if problem is not None:
                damaged.append((record, problem))
                problems.append(Problem(str(record.path), problem, record.guid))
        strays = _stray_files(archive)
        problems += [Problem(str(p.relative_to(archive.root)),
                             "stray temporary file left by an interrupted write") for p in strays]
        if repair:
            for record, problem in damaged:
                _forget(archive, manifest, record, problem)
            for stray in strays:
                _move_aside(archive, stray)
    return problems


def _check(archive: Archive, record: Record) -> str | None:
    assert record.path is not None
    try:
        path = archive.existing_file(record.path)
    except ArchiveError as error:
        return str(error)
    if not path.is_file():
        if record.last_error == REPAIRED:
            return f"missing ({REPAIRED}); the next sync fetches it again"
        return "missing"
    size = path.stat().st_size
    if record.file_bytes is not None and size < record.file_bytes:
        return f"truncated: {size} of {record.file_bytes} bytes"
    if record.file_bytes is not None and size != record.file_bytes:
        return f"size changed: {size}, expected {record.file_bytes}"
    if record.format != "mp3":
        if file_sha256(path) != record.audio_sha256:
            return "altered: the file differs from what was archived"
        return _check_side_files(archive, record)
    tag_digest, audio_digest = file_digests(path)
    if audio_digest != record.audio_sha256:
        return "altered: the audio differs from what was archived"
    if tag_digest != record.tag_sha256:
        return "altered: the tag differs from what was archived"
    return _check_side_files(archive, record)


def _check_side_files(archive: Archive, record: Record) -> str | None:
    """Transcripts and chapter sidecars recorded beside the audio."""
    try:
        files = json.loads(record.files or "[]")
    except ValueError:
        return "the manifest's list of files beside the audio is damaged"
    for entry in files if isinstance(files, list) else []:
        if not isinstance(entry, dict) or entry.get("failed_at"):
            continue
        name = str(entry.get("path", ""))
        try:
            path = archive.existing_file(name)
        except ArchiveError as error:
            return str(error)
        if not path.is_file():
            return f"{entry.get('kind', 'file')} {name} is missing"
        if file_sha256(path) != entry.get("sha256"):
            return f"{entry.get('kind', 'file')} {name} was altered"
    return None



def _stray_files(archive: Archive) -> list[Path]:
    """Temporary files under the archive's final names (never inside its state)."""
    found = []
    for directory, dirs, files in os.walk(archive.root):
        if Path(directory) == archive.root and STATE_DIR in dirs:
            dirs.remove(STATE_DIR)
        found += [Path(directory) / f for f in files if f.endswith(STRAY_SUFFIXES)]
    return sorted(found)


def _move_aside(archive: Archive, path: Path) -> Path:
    damaged = archive.state / "damaged"
    damaged.mkdir(exist_ok=True)
    target = damaged / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.name}"
    path.replace(target)
    log.warning("%s: moved aside to %s", path.relative_to(archive.root), target)
    return target


def _forget(archive: Archive, manifest: Manifest, record: Record, problem: str) -> None:
    """Make the next sync fetch this episode again, keeping any damaged file aside."""
    assert record.path is not None
    try:
        path = archive.existing_file(record.path)
    except ArchiveError as error:
        # A path that leaves the archive or passes a link: never touched, only forgotten.
        log.warning("%s: left where it is: %s", record.path, error)
        manifest.delete(record.guid)
        return
    if path.is_file() and not path.is_symlink():
        _move_aside(archive, path)
    # The row stays (same name next time) but promises nothing about a file any more.
    manifest.save(dataclasses.replace(
        record, file_bytes=None, file_mtime_ns=None, audio_sha256=None, tag_sha256=None,
        tag_hash=None, last_error=REPAIRED, last_error_at=now_iso(),
    ))
    log.info("%s: will be fetched again by the next sync", record.path)


def rebuild_manifest(archive: Archive) -> int:
    """A new manifest from the tags of the archived files; returns how many it holds.

    The new manifest is built beside the old one and takes its place only when
    complete, so a failure (a full disk, say) leaves the old one as it was. The old one
    is moved aside, never deleted. A lost state directory is made anew.
    """
    archive.prepare()
    with archive.lock():
        recover_journals(archive.journal_dir, check=archive.existing_target)
        records = [r for p in _archived_files(archive) if (r := _record_from_file(archive, p))]
        seen: set[str] = set()
        unique = []
        for record in records:
            if record.guid in seen:
                log.warning("%s: a second file for guid %s; left out", record.path, record.guid)
                continue
            seen.add(record.guid)
            unique.append(record)
        old = archive.manifest_path
        new = old.with_name(old.name + ".rebuilding")
        _remove_database(new)
        try:
            with Manifest.open(new) as manifest:
                manifest.save_many(unique)
            fsync_file(new)
        except BaseException:
            _remove_database(new)
            raise
        if old.exists():
            aside = old.with_name(f"{old.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{old}{suffix}").replace(f"{aside}{suffix}")
            log.warning("the old manifest was moved aside to %s", aside)
        new.replace(old)
        fsync_directory(old.parent)
    return len(unique)


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _archived_files(archive: Archive) -> list[Path]:
    return sorted(
        path for path in archive.root.rglob("*.mp3")
        if STATE_DIR not in path.relative_to(archive.root).parts and path.is_file()
        and not path.is_symlink()
    )


def _record_from_file(archive: Archive, path: Path) -> Record | None:
    from fetcher.tagging.writer import read_guid

    try:
        guid = read_guid(path)
    except TagError as exc:
        log.warning("%s; left out", exc)
        return None
    if not guid:
        log.warning("%s: has no TGID (not tagged by fetcher); left out", path)
        return None
    tag_digest, audio_digest = file_digests(path)
    stat = path.stat()
    return Record(
        guid=guid,
        show_slug="",
        source="",
        url="",  # unknown until the next sync matches the guid to a document
        path=str(PurePosixPath(*path.relative_to(archive.root).parts)),
        file_bytes=stat.st_size,
        file_mtime_ns=stat.st_mtime_ns,
        audio_sha256=audio_digest,
        tag_sha256=tag_digest,
        tag_hash="",  # forces one in-place re-tag, which records the rest
        duration_ms=measure_duration_ms(path),
        archived_at=now_iso(),
        updated_at=now_iso(),
    )
