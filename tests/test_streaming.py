"""A big archive's run: documents read and planned in batches, up-to-date episodes
counted instead of kept, and settled documents counted from their files' sizes alone."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.corpus import Corpus
from support.docs import render_document, split_document

import fetcher
from fetcher import plan, sources
from fetcher.sources import doccache, documents
from fetcher.sources import unique as unique_module
from fetcher.store.manifest import Manifest
from fetcher.store.schema import APPLICATION_ID, MIGRATIONS, statements

UP_TO_DATE = fetcher.Status.UP_TO_DATE
DOWNLOADED = fetcher.Status.DOWNLOADED
SKIPPED = fetcher.Status.SKIPPED


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two documents a batch, so that five documents take three batches."""
    monkeypatch.setattr(sources, "BATCH", 2)


def manifest_of(corpus: Corpus) -> Path:
    return corpus.archive / ".fetcher" / "manifest.sqlite3"


def settled_paths(corpus: Corpus) -> set[str]:
    with sqlite3.connect(manifest_of(corpus)) as db:
        rows = db.execute("SELECT path FROM documents WHERE settled IS NOT NULL").fetchall()
    return {Path(row[0]).name for row in rows}


def counts(report: fetcher.SyncReport) -> dict[str, int]:
    return {status.value: report.count(status) for status in fetcher.Status}


def settle(corpus: Corpus) -> fetcher.Config:
    """Archive the corpus, then run once more so that every document settles."""
    config = fetcher.load_config(corpus.config())
    assert fetcher.sync(config).count(DOWNLOADED) == 5
    assert fetcher.sync(config, keep_up_to_date=False).count(UP_TO_DATE) == 5
    assert len(settled_paths(corpus)) == 5
    return config


def nothing_is_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("an episode was read or planned although its document settled")

    monkeypatch.setattr(documents, "read_document", refuse)
    monkeypatch.setattr(doccache, "_entry", refuse)
    monkeypatch.setattr(plan, "_decide", refuse)


def test_a_counted_run_holds_no_outcome_per_up_to_date_episode(
        corpus: Corpus, small_batches: None) -> None:
    config = fetcher.load_config(corpus.config())
    assert fetcher.sync(config).count(DOWNLOADED) == 5
    counted = fetcher.sync(config, keep_up_to_date=False)
    assert counted.count(UP_TO_DATE) == 5 and counted.ok
    assert counted.outcomes == () and counted.plan.steps == ()
    listed = fetcher.sync(config)
    assert [o.status for o in listed.outcomes] == [UP_TO_DATE] * 5
    assert counts(listed) == counts(counted)


def test_settled_documents_are_counted_without_being_read_or_planned(
        corpus: Corpus, small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    config = settle(corpus)
    nothing_is_planned(monkeypatch)
    report = fetcher.sync(config, keep_up_to_date=False)
    assert report.count(UP_TO_DATE) == 5 and report.ok
    assert [s.episodes for s in report.sources] == [5]


def test_a_settled_episode_whose_file_changed_size_is_downloaded_again(
        corpus: Corpus, small_batches: None) -> None:
    config = settle(corpus)
    seed = next(corpus.archive.rglob("0603 - *.mp3"))
    whole = seed.read_bytes()
    seed.write_bytes(whole[:-100])
    report = fetcher.sync(config, keep_up_to_date=False)
    assert counts(report)["downloaded"] == 1 and counts(report)["up_to_date"] == 4
    assert seed.read_bytes() == whole


def test_a_listing_run_reports_settled_documents_in_full(corpus: Corpus) -> None:
    config = settle(corpus)
    report = fetcher.sync(config)  # as `sync --json`: every episode has its outcome
    assert sorted(o.episode.title for o in report.outcomes if o.episode)[0]
    assert [o.status for o in report.outcomes] == [UP_TO_DATE] * 5


def test_any_write_to_an_episode_row_unsettles_its_document(corpus: Corpus) -> None:
    settle(corpus)
    seed_guid = next(guid for guid, path in corpus.paths.items() if "0603" in path.name)
    with Manifest.open(manifest_of(corpus)) as manifest:
        manifest.record_error(seed_guid, "a test's error", "2026-01-01T00:00:00+00:00")
    assert "seed-0603.md" not in settled_paths(corpus)
    assert len(settled_paths(corpus)) == 4
    with Manifest.open(manifest_of(corpus)) as manifest:
        manifest.delete(next(g for g in corpus.paths if g != seed_guid))
    assert len(settled_paths(corpus)) == 3


def test_settled_files_are_looked_for_under_the_archive_as_configured(
        corpus: Corpus, tmp_path: Path) -> None:
    settle(corpus)
    # A copy of the archive, one file missing from the copy only: the settled
    # document must not be counted from the original's file.
    copy = tmp_path / "copy"
    shutil.copytree(corpus.archive, copy)
    next(copy.rglob("0603 - *.mp3")).unlink()
    config = fetcher.load_config(corpus.config(archive={"dir": str(copy)}))
    report = fetcher.sync(config, keep_up_to_date=False)
    assert counts(report)["downloaded"] == 1 and counts(report)["up_to_date"] == 4
    assert next(copy.rglob("0603 - *.mp3")).is_file()


@pytest.mark.parametrize("name", ["0-first.md", "zz-last.md"])
def test_a_repeated_guid_is_skipped_the_same_whether_or_not_documents_settled(
        corpus: Corpus, small_batches: None, name: str) -> None:
    config = settle(corpus)
    seed = next(path for path in corpus.paths.values() if "0603" in path.name)
    shutil.copy(seed, corpus.docs / name)
    counted = fetcher.sync(config, keep_up_to_date=False)
    listed = fetcher.sync(config)
    assert counts(counted) == counts(listed)
    assert counts(counted)["skipped"] == 1 and counts(counted)["up_to_date"] == 5
    skip = next(o for o in listed.outcomes if o.status is SKIPPED)
    assert "duplicate guid" in (skip.reason or "")


def test_new_episodes_in_different_batches_never_share_a_path(
        corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "BATCH", 1)
    seed = next(path for path in corpus.paths.values() if "0603" in path.name)
    obj, body = split_document(seed)
    obj["episode_guid"] = "another-guid-with-the-same-number-and-title"
    (corpus.docs / "zz-twin.md").write_text(render_document(obj, body), encoding="utf-8")
    config = fetcher.load_config(corpus.config())
    report = fetcher.sync(config, keep_up_to_date=False)
    assert report.count(DOWNLOADED) == 6
    twins = sorted(p.name for p in corpus.archive.rglob("0603 - *.mp3"))
    assert len(twins) == 2 and twins[0] != twins[1]


def test_a_schema_3_manifest_gains_settled_documents_and_feed_items(tmp_path: Path) -> None:
    path = tmp_path / "manifest.sqlite3"
    with sqlite3.connect(path) as db:
        for migration in MIGRATIONS[:3]:
            for statement in statements(migration):
                db.execute(statement)
        db.execute("PRAGMA user_version = 3")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    with Manifest.open(path) as manifest:
        assert manifest.schema_version == len(MIGRATIONS) >= 4
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(documents)")]
        triggers = {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        tables = {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "settled" in columns
    assert "feed_items" in tables
    assert triggers == {f"unsettle_{what}on_{change}" for what in ("", "item_")
                        for change in ("insert", "update", "delete")}


def episode(guid: str, source: str) -> fetcher.Episode:
    return fetcher.Episode(guid=guid, show_slug="show", show_name="Show", title=guid,
                           date=datetime(2025, 1, 1, tzinfo=UTC),
                           audio_url=f"https://example.com/{guid}.mp3", source=source)


@pytest.mark.parametrize("temporary_database", [True, False])
def test_a_guid_read_in_an_earlier_batch_is_skipped_naming_its_first_source(
        monkeypatch: pytest.MonkeyPatch, temporary_database: bool) -> None:
    if not temporary_database:  # no room for temporary files: kept in memory instead
        def refuse(*_: object, **__: object) -> None:
            raise sqlite3.OperationalError("unable to open database file")

        monkeypatch.setattr(unique_module.sqlite3, "connect", refuse)
    unique = unique_module.Unique()
    try:
        assert unique.entries([episode("a", "one.md")]) == [episode("a", "one.md")]
        later = unique.entries([episode("a", "two.md"), fetcher.Settled("three.md", ("a", "b")),
                                episode("b", "four.md")])
    finally:
        unique.close()
    assert [type(e).__name__ for e in later] == ["Skipped", "Skipped", "Settled", "Skipped"]
    assert isinstance(later[0], fetcher.Skipped) and "first read from one.md" in later[0].reason
    assert later[2] == fetcher.Settled("three.md", ("b",))
    assert isinstance(later[3], fetcher.Skipped) and "from three.md" in later[3].reason
