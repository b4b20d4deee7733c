"""The document cache: an unchanged document is not parsed again; one that needs work
is read in full before anything is done with it."""

from __future__ import annotations

import os
import sqlite3

import pytest
from support.corpus import Corpus

import fetcher
from fetcher.sources import documents

SEED_GUID = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"


def no_parsing(*_: object) -> None:
    raise AssertionError("a document was parsed although it was cached")


def test_unchanged_documents_are_not_parsed_again(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = fetcher.load_config(corpus.config())
    assert fetcher.sync(config).count(fetcher.Status.DOWNLOADED) == 5
    with sqlite3.connect(corpus.archive / ".fetcher" / "manifest.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM documents").fetchone()[0] == 5
    monkeypatch.setattr(documents, "read_document", no_parsing)
    report = fetcher.sync(config)
    assert report.count(fetcher.Status.UP_TO_DATE) == 5
    titles = {o.episode.title for o in report.outcomes if o.episode}
    assert "All Your Kernels Belong to Rust" in titles  # the report still names them


def test_a_cached_episode_that_needs_work_is_read_in_full(corpus: Corpus) -> None:
    config = fetcher.load_config(corpus.config())
    fetcher.sync(config)
    fetcher.sync(config)  # now from the cache
    seed = next(corpus.archive.rglob("0603 - *.mp3"))
    seed.unlink()
    report = fetcher.sync(config)
    assert report.count(fetcher.Status.DOWNLOADED) == 1 and report.ok
    assert seed.is_file()


def test_an_edited_document_is_parsed_again(corpus: Corpus) -> None:
    config = fetcher.load_config(corpus.config())
    fetcher.sync(config)
    corpus.edit(SEED_GUID, title="A corrected title")
    report = fetcher.sync(config)
    assert report.count(fetcher.Status.RETAGGED) == 1
    # Same bytes, another mtime: parsed again, and still up to date.
    path = corpus.paths[SEED_GUID]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert fetcher.sync(config).count(fetcher.Status.UP_TO_DATE) == 5


@pytest.mark.parametrize("spelling", ["./docs/", "docs//", "."])
def test_any_spelling_of_the_source_keeps_cache_and_rereads_consistent(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    # The cache is keyed by each document's path as text: "./docs/" and "docs" must give
    # the same text both when a document is parsed and when it is read from the cache,
    # or an episode read again in full would not replace its light entry.
    monkeypatch.chdir(corpus.docs.parent if spelling != "." else corpus.docs)
    config = fetcher.load_config(corpus.config())
    assert fetcher.sync(config, sources=[spelling]).count(fetcher.Status.DOWNLOADED) == 5
    cached = fetcher.sync(config, sources=[spelling])
    assert cached.count(fetcher.Status.UP_TO_DATE) == 5
    next(corpus.archive.rglob("0603 - *.mp3")).unlink()
    report = fetcher.sync(config, sources=[spelling])
    assert report.count(fetcher.Status.DOWNLOADED) == 1
    assert report.count(fetcher.Status.UP_TO_DATE) == 4 and report.ok
    sources = {o.source for o in report.outcomes}
    assert sources == {o.source for o in cached.outcomes}
    assert not any(s.startswith("./") or "//" in s for s in sources if s)
