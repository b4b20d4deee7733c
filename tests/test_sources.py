"""Reading episode documents: real fixtures named by quirk, and synthetic bad input."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.docs import DOCS, SEED_DOC, DocFactory, split_document

from fetcher.errors import SourceError
from fetcher.model import Episode, Skipped
from fetcher.sources import load_episodes
from fetcher.sources.documents import read_document

SHARED = Path(__file__).resolve().parents[2] / "shared" / "episodes" / "linux-unplugged"


def only(path: Path) -> Episode | Skipped:
    entries = read_document(path)
    assert len(entries) == 1
    return entries[0]


def test_seed_document_maps_every_field() -> None:
    episode = only(SEED_DOC)
    assert isinstance(episode, Episode)
    assert episode.guid == "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"
    assert (episode.show_slug, episode.show_name) == ("linux-unplugged", "LINUX Unplugged")
    assert (episode.episode, episode.episode_padded) == (603, "0603")
    assert episode.title == "All Your Kernels Belong to Rust"
    assert episode.description.startswith("There have been major Rust developments")
    assert episode.show_notes.startswith("### ") or episode.show_notes
    assert episode.date == datetime(2025, 2, 23, 18, 15, tzinfo=timezone(timedelta(hours=-8)))
    assert episode.date.tzinfo is not None
    assert episode.hosts == ("brent", "chris", "wes")
    assert episode.guests == ("hannah-anderson",)
    assert "rust" in episode.tags
    assert episode.page_url == "https://www.jupiterbroadcasting.com/show/linux-unplugged/603"
    assert episode.header_image == "/images/shows/linux-unplugged.png"
    assert episode.audio_url.endswith("ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf.mp3")
    assert episode.expected_bytes == 58759161
    assert episode.declared_duration_s == 3630.0
    assert episode.source == str(SEED_DOC)
    assert [c.title for c in episode.chapters][:2] == ["Intro", "Interview with Hannah Anderson"]
    assert episode.chapters[1].start_ms == 103_000
    assert episode.chapters[0].end_ms == 103_000
    assert episode.chapters[-1].end_ms is None  # duration comes from the audio later


def test_markdown_body_becomes_show_notes() -> None:
    _, body = split_document(SEED_DOC)
    episode = only(SEED_DOC)
    assert isinstance(episode, Episode)
    assert episode.show_notes == body.strip()


def test_episode_without_chapters() -> None:
    episode = only(DOCS / "no-chapters-0001.md")
    assert isinstance(episode, Episode)
    assert episode.chapters == ()
    assert episode.page_url == "/41497/too-much-choice-lu1/"  # site-relative, kept as is


def test_size_given_as_a_string() -> None:
    episode = only(DOCS / "string-bytes-0553.md")
    assert isinstance(episode, Episode)
    assert episode.expected_bytes == 68362471


def test_duplicate_chapter_times_collapse(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        episode = only(DOCS / "duplicate-chapters-0474.md")
    assert isinstance(episode, Episode)
    assert len(episode.chapters) == 18
    assert len({c.start_ms for c in episode.chapters}) == 18
    assert "duplicate-chapters-0474.md: 18 chapter(s)" in caplog.text


def test_fractional_chapter_times_keep_milliseconds() -> None:
    episode = only(DOCS / "float-chapter-times-0616.md")
    assert isinstance(episode, Episode)
    raw = split_document(DOCS / "float-chapter-times-0616.md")[0]["podcast_chapters"]
    fractional = [c["startTime"] for c in raw["chapters"] if isinstance(c["startTime"], float)]
    assert fractional
    assert round(fractional[0] * 1000) in {c.start_ms for c in episode.chapters}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("toml-show-index.md", "TOML front matter"),
        ("yaml-subscribe-page.md", "YAML front matter"),
        ("empty-section-index.md", "empty document"),
    ],
)
def test_pages_that_are_not_episodes_are_skipped(name: str, reason: str) -> None:
    entry = only(DOCS / name)
    assert isinstance(entry, Skipped)
    assert reason in entry.reason


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"type": "show"}, 'type is "show"'),
        ({"draft": True}, "draft"),
        ({"podcast_file": None}, "no audio"),
        ({"podcast_file": ""}, "no audio"),
    ],
)
def test_skips(make_doc: DocFactory, overrides: dict[str, object], reason: str) -> None:
    entry = only(make_doc(**overrides))
    assert isinstance(entry, Skipped)
    assert reason in entry.reason


def test_missing_audio_key_is_a_skip(make_doc: DocFactory) -> None:
    entry = only(make_doc(drop=("podcast_file",)))
    assert isinstance(entry, Skipped) and "no audio" in entry.reason


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"podcast_file": "ftp://example.org/a.mp3"}, "http or https"),
        ({"podcast_file": "file:///etc/passwd"}, "http or https"),
        ({"podcast_file": 12}, "not a URL"),
        ({"podcast_bytes": -5}, "must be positive"),
        ({"podcast_bytes": 0}, "must be positive"),
        ({"podcast_bytes": "12kB"}, "not a whole number"),
        ({"podcast_bytes": 1.5}, "not a whole number"),
        ({"podcast_bytes": True}, "not a whole number"),
        ({"date": "yesterday"}, "not ISO 8601"),
        ({"hosts": "x", "tags": 5}, "tags is a int"),
        ({"episode": [6]}, "not an episode number"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_file(
    make_doc: DocFactory, overrides: dict[str, object], message: str
) -> None:
    path = make_doc(**overrides)
    with pytest.raises(SourceError) as info:
        read_document(path)
    text = str(info.value)
    assert text.startswith(str(path))
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("key", ["episode_guid", "title", "date", "show_slug"])
def test_missing_required_fields(make_doc: DocFactory, key: str) -> None:
    path = make_doc(drop=(key,))
    with pytest.raises(SourceError, match=f"required field {key} is missing"):
        read_document(path)


def test_podcast_bytes_null_means_unknown(make_doc: DocFactory) -> None:
    episode = only(make_doc(podcast_bytes=None))
    assert isinstance(episode, Episode) and episode.expected_bytes is None


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.md"
    path.write_text('{\n  "title": "x"\n  "oops": 1\n}\nbody', encoding="utf-8")
    with pytest.raises(SourceError) as info:
        read_document(path)
    assert str(info.value).startswith(f"{path}:3:3: invalid JSON: Expecting ',' delimiter")
    assert "invalid JSON" in str(info.value)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.md"
    path.write_bytes(b'{"title": "caf\xe9"}\n')
    with pytest.raises(SourceError, match="not valid UTF-8"):
        read_document(path)


def test_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.md"
    path.write_bytes(b"\xef\xbb\xbf" + SEED_DOC.read_bytes())
    with pytest.raises(SourceError, match="byte-order mark"):
        read_document(path)


def test_naive_date_is_taken_as_utc(make_doc: DocFactory) -> None:
    episode = only(make_doc(date="2024-01-02T03:04:05"))
    assert isinstance(episode, Episode)
    assert episode.date == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_plain_json_file_with_a_list_of_episodes(tmp_path: Path) -> None:
    obj, _ = split_document(SEED_DOC)
    second = dict(obj, episode_guid="other", episode=604, title="Next")
    path = tmp_path / "feed.json"
    path.write_text(json.dumps([obj, second]), encoding="utf-8")
    entries = read_document(path)
    assert [e.title for e in entries if isinstance(e, Episode)] == [obj["title"], "Next"]


def test_plain_json_file_with_one_object(tmp_path: Path) -> None:
    obj, _ = split_document(SEED_DOC)
    path = tmp_path / "one.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
    entry = only(path)
    assert isinstance(entry, Episode) and entry.show_notes == ""


def test_duplicate_guid_keeps_the_first_and_warns(
    make_doc: DocFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_doc("a.md", episode_guid="same")
    second = make_doc("b.md", episode_guid="same", title="Copy")
    with caplog.at_level(logging.WARNING):
        loaded = load_episodes([tmp_path])
    assert [e.source for e in loaded.episodes] == [str(first)]
    assert len(loaded.skipped) == 1 and "duplicate guid same" in loaded.skipped[0].reason
    assert str(first) in caplog.text and str(second) in caplog.text


def test_directory_walk_is_recursive_sorted_and_goes_on_after_errors(
    make_doc: DocFactory, tmp_path: Path
) -> None:
    make_doc("b.md")
    make_doc("a.md", podcast_bytes=-1)
    make_doc("nested/c.md")
    (tmp_path / ".hidden.md").write_text("{", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a document", encoding="utf-8")
    loaded = load_episodes([tmp_path])
    assert [Path(e.source).name for e in loaded.episodes] == ["b.md", "c.md"]
    assert [Path(e.source).name for e in loaded.errors] == ["a.md"]


def test_missing_path_is_an_error_and_others_still_load(tmp_path: Path) -> None:
    loaded = load_episodes([tmp_path / "nope", SEED_DOC])
    assert len(loaded.errors) == 1 and "no such file" in str(loaded.errors[0])
    assert len(loaded.episodes) == 1


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared corpus not beside the checkout")
def test_whole_shared_corpus_loads() -> None:
    loaded = load_episodes([SHARED])
    assert len(loaded.entries) == 654
    assert len(loaded.episodes) == 650
    assert len(loaded.skipped) == 4
    assert loaded.errors == []
