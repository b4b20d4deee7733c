"""Reliability: disk faults, hostile documents, hostile servers, manifest damage and
secrets. Each test would fail if the promise it names did not hold."""

from __future__ import annotations

import errno
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.corpus import Corpus
from support.mp3factory import mp3_bytes

import fetcher
from fetcher import staging
from fetcher.errors import SourceError
from fetcher.model import Episode, Skipped, normalise_chapters, parse_chapters
from fetcher.sources.documents import read_document
from fetcher.tagging import writer

SEED_GUID = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fetcher", *args], capture_output=True,
                          text=True, timeout=120)


def archived(corpus: Corpus) -> list[Path]:
    return sorted(p for p in corpus.archive.rglob("*.mp3") if ".fetcher" not in p.parts)


# --- disk full ----------------------------------------------------------------------


def _enospc(*_: Any, **__: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.usefixtures("body_path")  # on both body paths
def test_disk_full_while_downloading_fails_one_episode(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = staging.Sink.write

    def write(self: staging.Sink, data: bytes | bytearray) -> None:
        if self.reserve and len(data) >= 1 << 20:  # only the seed is large enough
            _enospc()
        original(self, data)

    monkeypatch.setattr(staging.Sink, "write", write)
    report = fetcher.sync(fetcher.load_config(corpus.config()))
    failed = [o for o in report.outcomes if o.status is fetcher.Status.FAILED]
    assert len(failed) == 1 and failed[0].episode is not None
    assert failed[0].episode.guid == SEED_GUID
    assert failed[0].error is not None and "No space left on device" in failed[0].error
    assert report.count(fetcher.Status.DOWNLOADED) == 4
    assert len(archived(corpus)) == 4
    monkeypatch.undo()
    assert cli("verify", "-c", str(corpus.config())).returncode == 0
    again = fetcher.sync(fetcher.load_config(corpus.config()))
    assert again.ok and again.count(fetcher.Status.DOWNLOADED) == 1


def test_disk_full_while_tagging_fails_one_episode(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "_overwrite_in_place", _enospc)
    monkeypatch.setattr(writer, "_rewrite", _enospc)
    report = fetcher.sync(fetcher.load_config(corpus.config()))
    assert report.count(fetcher.Status.FAILED) == 5
    errors = {o.error for o in report.outcomes}
    assert all(e and "cannot write tags: No space left on device" in e for e in errors)
    assert archived(corpus) == []  # nothing untagged reached a final name
    monkeypatch.undo()
    again = fetcher.sync(fetcher.load_config(corpus.config()))
    assert again.ok and again.count(fetcher.Status.DOWNLOADED) == 5
    assert corpus.audio_requests().count(f"/audio/{SEED_GUID}.mp3") == 1  # not re-downloaded


# --- hostile documents ----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=5),
    max_leaves=30,
)
FIELDS = ["type", "draft", "podcast_file", "podcast_bytes", "episode_guid", "title",
          "show_slug", "date", "episode", "episode_padded", "hosts", "guests", "tags",
          "jb_url", "header_image", "podcast_duration", "transcripts", "podcast_chapters",
          "description", "show_name"]
documents = st.fixed_dictionaries(
    {},
    optional={key: json_values for key in FIELDS}
    | {"podcast_file": st.sampled_from(["https://x/a.mp3", "ftp://x", ""]) | json_values,
       "episode_guid": st.text(max_size=10) | json_values},
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                    HealthCheck.too_slow])
@given(doc=documents, body=st.text(max_size=50))
def test_any_document_is_an_episode_a_skip_or_one_line_error(
    tmp_path: Path, doc: dict[str, Any], body: str
) -> None:
    path = tmp_path / "fuzz.md"
    path.write_text(json.dumps(doc, allow_nan=True) + body, encoding="utf-8")
    try:
        entries = read_document(path)
    except SourceError as error:
        assert "\n" not in str(error) and str(error).startswith(str(path))
        return
    assert all(isinstance(e, Episode | Skipped) for e in entries)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_any_bytes_are_an_episode_a_skip_or_one_line_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bytes.md"
    path.write_bytes(data)
    try:
        read_document(path)
    except SourceError as error:
        assert "\n" not in str(error)


def test_deep_nesting_and_huge_numbers(tmp_path: Path) -> None:
    path = tmp_path / "deep.md"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(SourceError):
        read_document(path)
    chapters, _ = parse_chapters([{"startTime": 10**400}, {"startTime": "1e999"},
                                  {"startTime": 5, "endTime": 10**30}])
    assert [c.start_ms for c in chapters] == [5000]
    assert normalise_chapters(chapters, 10_000)[0][0].end_ms == 10_000


# --- hostile servers ------------------------------------------------------------------


@pytest.mark.usefixtures("body_path")  # on both body paths
def test_endless_body_is_cut_off(corpus: Corpus) -> None:
    corpus.server.add(f"/audio/{SEED_GUID}.mp3", body=mp3_bytes(200), endless=True)
    corpus.edit(SEED_GUID, podcast_bytes=None)  # nothing says how long it should be
    config = fetcher.load_config(corpus.config())
    config = _with_download(config, max_bytes=2_000_000)
    started = time.monotonic()
    report = fetcher.sync(config)
    assert time.monotonic() - started < 30
    failed = [o for o in report.outcomes if o.status is fetcher.Status.FAILED]
    assert len(failed) == 1 and "cut off" in (failed[0].error or "")
    assert report.count(fetcher.Status.DOWNLOADED) == 4


@pytest.mark.usefixtures("body_path")  # on both body paths
def test_server_that_drips_forever_is_given_up_on(corpus: Corpus) -> None:
    corpus.server.add(f"/audio/{SEED_GUID}.mp3", body=corpus.audio[SEED_GUID],
                      drip_delay=0.05, drip_size=16)
    config = _with_download(fetcher.load_config(corpus.config()), min_speed=5_000,
                            speed_window=0.5, retries=1)
    started = time.monotonic()
    report = fetcher.sync(config)
    assert time.monotonic() - started < 30
    failed = [o for o in report.outcomes if o.status is fetcher.Status.FAILED]
    assert len(failed) == 1 and "too slow" in (failed[0].error or "")


def test_header_flood_is_a_clean_failure(corpus: Corpus) -> None:
    corpus.server.add(f"/audio/{SEED_GUID}.mp3", body=corpus.audio[SEED_GUID],
                      header_flood=2_000)
    report = fetcher.sync(fetcher.load_config(corpus.config()))
    failed = [o for o in report.outcomes if o.status is fetcher.Status.FAILED]
    # Refused by fetcher's limit, or earlier by h11's when the flood spans several reads.
    assert len(failed) == 1
    assert any(word in (failed[0].error or "") for word in ("bytes of headers",
                                                            "RemoteProtocolError"))
    assert report.count(fetcher.Status.DOWNLOADED) == 4


def _with_download(config: fetcher.Config, **changes: Any) -> fetcher.Config:
    from dataclasses import replace

    return replace(config, download=replace(config.download, **changes))


# --- manifest damage ------------------------------------------------------------------


def test_corrupt_manifest_is_refused_then_rebuilt_from_tags(corpus: Corpus) -> None:
    config = corpus.config()
    assert cli("sync", "-c", str(config)).returncode == 0
    manifest = corpus.archive / ".fetcher" / "manifest.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(f"{manifest}{suffix}").unlink(missing_ok=True)
    manifest.write_bytes(b"garbage" * 1000)
    result = cli("sync", "-c", str(config))
    assert result.returncode == 2
    assert "manifest is damaged" in result.stderr and "verify --rebuild" in result.stderr
    assert "Traceback" not in result.stderr
    rebuilt = cli("verify", "-c", str(config), "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt from 5 archived files" in rebuilt.stderr
    assert list(manifest.parent.glob("manifest.sqlite3.old-*"))  # kept, not deleted
    corpus.server.reset_stats()
    result = cli("sync", "-c", str(config), "--json")
    summary = json.loads(result.stdout)
    assert summary["counts"]["retagged"] == 5 and corpus.audio_requests() == []
    result = cli("sync", "-c", str(config), "--json")
    assert json.loads(result.stdout)["counts"]["up_to_date"] == 5
    assert cli("verify", "-c", str(config)).returncode == 0


def test_foreign_or_newer_manifest_exits_2(corpus: Corpus) -> None:
    config = corpus.config()
    state = corpus.archive / ".fetcher"
    state.mkdir(parents=True)
    db = sqlite3.connect(state / "manifest.sqlite3")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    result = cli("sync", "-c", str(config))
    assert result.returncode == 2 and "not a fetcher manifest" in result.stderr
    (state / "manifest.sqlite3").unlink()
    assert cli("sync", "-c", str(config)).returncode == 0
    db = sqlite3.connect(state / "manifest.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    result = cli("sync", "-c", str(config))
    assert result.returncode == 2 and "written by a newer fetcher" in result.stderr


def test_verify_repair_moves_damage_aside_and_sync_fetches_again(corpus: Corpus) -> None:
    config = corpus.config()
    cli("sync", "-c", str(config))
    victim = archived(corpus)[0]
    data = bytearray(victim.read_bytes())
    data[-500] ^= 0xFF
    victim.write_bytes(bytes(data))
    archived(corpus)[1].unlink()
    result = cli("verify", "-c", str(config), "--repair")
    assert result.returncode == 1 and "2 problems repaired" in result.stderr
    assert list((corpus.archive / ".fetcher" / "damaged").iterdir())  # kept aside
    # Until a sync restores them, the episodes moved aside are still reported missing.
    again = cli("verify", "-c", str(config))
    assert again.returncode == 1
    assert again.stderr.count("moved aside by verify --repair") == 2
    result = cli("sync", "-c", str(config), "--json")
    assert json.loads(result.stdout)["counts"]["downloaded"] == 2
    assert cli("verify", "-c", str(config)).returncode == 0


# --- secrets ----------------------------------------------------------------------------


def test_query_strings_never_appear_in_output(corpus: Corpus) -> None:
    secret = "SECRET-TOKEN-123"
    for index, guid in enumerate(corpus.audio):
        route = f"/audio/{guid}.mp3"
        if index == 0:
            corpus.server.add(route, body=b"", statuses=[404])
        elif index == 1:
            corpus.server.add(route, body=corpus.audio[guid], statuses=[503], retry_after="0")
        elif index == 2:
            corpus.server.add(route, body=corpus.audio[guid], drop_after=[1000])
        corpus.edit(guid, podcast_file=corpus.server.url(f"{route}?token={secret}"))
    seen = ""
    for flags in (["--json", "-v"], ["-v"], []):
        result = cli("sync", "-c", str(corpus.config()), *flags)
        assert secret not in result.stdout and secret not in result.stderr
        seen += result.stderr
    assert "/audio/" in seen and "?<redacted>" in seen  # the URL is named, its token is not


def test_symlink_planted_over_an_archived_file_is_not_followed(
    corpus: Corpus, tmp_path: Path
) -> None:
    config = corpus.config()
    assert cli("sync", "-c", str(config)).returncode == 0
    outside = tmp_path / "outside.mp3"
    outside.write_bytes(b"precious data, not an episode")
    seed = next(corpus.archive.rglob("0603 - *.mp3"))
    seed.unlink()
    seed.symlink_to(outside)
    corpus.edit(SEED_GUID, title="Retitled")  # a re-tag would write through the link
    result = cli("sync", "-c", str(config))
    assert result.returncode == 1 and "is a symbolic link" in result.stderr
    assert outside.read_bytes() == b"precious data, not an episode"
    verified = cli("verify", "-c", str(config))
    assert verified.returncode == 1 and "is a symbolic link" in verified.stderr
