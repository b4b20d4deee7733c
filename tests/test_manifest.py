"""The manifest: schema versions, foreign and damaged files, records round-trip."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fetcher.errors import ManifestError
from fetcher.store.manifest import APPLICATION_ID, SCHEMA_VERSION, Manifest, Record


def test_new_manifest_is_migrated_and_marked(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    with Manifest.open(path) as manifest:
        assert manifest.schema_version == SCHEMA_VERSION
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_records_round_trip(tmp_path: Path) -> None:
    record = Record("g", "show", "doc.md", "https://x/a.mp3", path="show/a.mp3",
                    expected_bytes=10, file_bytes=20, size_discrepancy=True)
    with Manifest.open(tmp_path / "m") as manifest:
        manifest.save(record)
        manifest.record_error("g", "boom", "now")
    with Manifest.open(tmp_path / "m") as manifest:
        stored = manifest.get("g")
        assert stored is not None
        assert stored.size_discrepancy is True and stored.last_error == "boom"
        assert list(manifest.iter_archived()) == [stored]
        assert manifest.records() == {"g": stored}


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m"
    Manifest.open(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ManifestError, match="written by a newer fetcher"):
        Manifest.open(path)


def test_foreign_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "m"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(ManifestError, match="not a fetcher manifest"):
        Manifest.open(path)
    assert path.read_bytes() == before


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ManifestError, match="damaged or not a database"):
        Manifest.open(path)


def test_readonly_open_of_a_missing_manifest(tmp_path: Path) -> None:
    assert Manifest.open_readonly(tmp_path / "none") is None
