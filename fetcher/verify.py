"""Checking an archive against its manifest, repairing it, and rebuilding a lost manifest.

- :func:`verify_archive` re-hashes every archived file (tag and audio) and reports
  missing, truncated or altered files; with ``repair`` it forgets them in the manifest
  (an altered file is moved to ``.fetcher/damaged/``, never deleted) so that the next
  sync fetches them again.
- :func:`rebuild_manifest` makes a new manifest from the archived files' own tags when
  the old one is lost or damaged (it is moved aside, not deleted). The next sync
  re-tags each file in place, which fills in what the tags do not hold.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path, PurePosixPath

from fetcher.audio import file_digests, measure_duration_ms
from fetcher.errors import ArchiveError, TagError
from fetcher.staging import recover_journals
from fetcher.store import Archive
from fetcher.store.local import STATE_DIR, now_iso
from fetcher.store.manifest import Manifest, Record

log = logging.getLogger(__name__)


def verify_archive(archive: Archive, *, repair: bool = False) -> list[tuple[Record, str]]:
    """Re-hash every archived file against the manifest; the problems found."""
    problems: list[tuple[Record, str]] = []
    with archive.lock(), Manifest.open(archive.manifest_path, create=False) as manifest:
        recover_journals(archive.journal_dir)  # an interrupted re-tag is undone first
        for record in manifest.iter_archived():
            problem = _check(archive, record)
            if problem is not None:
                problems.append((record, problem))
        if repair:
            for record, problem in problems:
                _forget(archive, manifest, record, problem)
    return problems


def _check(archive: Archive, record: Record) -> str | None:
    assert record.path is not None
    try:
        path = archive.existing_file(record.path)
    except ArchiveError as error:
        return str(error)
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if record.file_bytes is not None and size < record.file_bytes:
        return f"truncated: {size} of {record.file_bytes} bytes"
    if record.file_bytes is not None and size != record.file_bytes:
        return f"size changed: {size}, expected {record.file_bytes}"
    tag_digest, audio_digest = file_digests(path)
    if audio_digest != record.audio_sha256:
        return "altered: the audio differs from what was archived"
    if tag_digest != record.tag_sha256:
        return "altered: the tag differs from what was archived"
    return None


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
    if problem != "missing" and path.is_file() and not path.is_symlink():
        damaged = archive.state / "damaged"
        damaged.mkdir(exist_ok=True)
        target = damaged / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.name}"
        path.replace(target)
        log.warning("%s: moved aside to %s", record.path, target)
    manifest.delete(record.guid)
    log.info("%s: will be fetched again by the next sync", record.path)


def rebuild_manifest(archive: Archive) -> int:
    """A new manifest from the tags of the archived files; returns how many it holds."""
    with archive.lock():
        recover_journals(archive.journal_dir)
        old = archive.manifest_path
        if old.exists():
            aside = old.with_name(f"{old.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            old.replace(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{old}{suffix}").unlink(missing_ok=True)
            log.warning("the old manifest was moved aside to %s", aside)
        records = [r for p in _archived_files(archive) if (r := _record_from_file(archive, p))]
        with Manifest.open(old) as manifest:
            seen: set[str] = set()
            unique = []
            for record in records:
                if record.guid in seen:
                    log.warning("%s: a second file for guid %s; left out", record.path,
                                record.guid)
                    continue
                seen.add(record.guid)
                unique.append(record)
            manifest.save_many(unique)
    return len(unique)


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
