"""Checking an archive against its manifest: missing, truncated or altered files."""

from __future__ import annotations

from fetcher.archive import Archive
from fetcher.audio import file_digests
from fetcher.errors import ArchiveError
from fetcher.manifest import Manifest, Record
from fetcher.tagging import recover_journals


def verify_archive(archive: Archive) -> list[tuple[Record, str]]:
    """Re-hash every archived file (tag and audio) against the manifest; the problems."""
    problems: list[tuple[Record, str]] = []
    with archive.lock(), Manifest.open(archive.manifest_path, create=False) as manifest:
        recover_journals(archive.journal_dir)  # an interrupted re-tag is undone first
        for record in manifest.iter_archived():
            assert record.path is not None
            try:
                path = archive.absolute(record.path)
            except ArchiveError as error:
                problems.append((record, str(error)))
                continue
            if not path.is_file():
                problems.append((record, "missing"))
                continue
            size = path.stat().st_size
            if record.file_bytes is not None and size < record.file_bytes:
                problems.append((record, f"truncated: {size} of {record.file_bytes} bytes"))
                continue
            if record.file_bytes is not None and size != record.file_bytes:
                problems.append((record, f"size changed: {size}, expected {record.file_bytes}"))
                continue
            tag_digest, audio_digest = file_digests(path)
            if audio_digest != record.audio_sha256:
                problems.append((record, "altered: the audio differs from what was archived"))
            elif tag_digest != record.tag_sha256:
                problems.append((record, "altered: the tag differs from what was archived"))
    return problems
