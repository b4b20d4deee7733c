"""``fetcher sync`` and ``fetcher verify`` end to end: the real CLI in a subprocess,
the loopback server, files read back with ffprobe and mutagen."""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mutagen.id3 import ID3
from support.corpus import CORPUS_DOCS, PNG_COVER, Corpus
from support.probe import ffprobe, ffprobe_chapters

import fetcher
from fetcher import render
from fetcher.audio import id3v2_size, payload_sha256
from fetcher.staging import sidecar_path
from fetcher.store.local import Archive

SUMMARY_KEYS = {"source", "guid", "show_slug", "episode", "title", "status", "path", "bytes",
                "error", "reason", "next_try", "transcripts"}


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fetcher", *args], capture_output=True,
                          text=True, timeout=timeout)


def sync_json(config: Path, *extra: str) -> tuple[int, dict[str, object]]:
    result = run("sync", "-c", str(config), "--json", *extra)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def archived_files(archive: Path) -> list[Path]:
    return sorted(p for p in archive.rglob("*.mp3") if ".fetcher" not in p.parts)


def test_first_run_archives_every_episode(corpus: Corpus) -> None:
    code, summary = sync_json(corpus.config())
    assert code == 0, [e["error"] for e in summary["episodes"]]  # type: ignore[union-attr]
    assert summary["ok"] is True
    assert summary["counts"] == {"downloaded": 5, "retagged": 0, "up_to_date": 0,
                                 "skipped": 0, "deferred": 0, "failed": 0,
                                 "interrupted": 0}
    episodes = summary["episodes"]
    assert isinstance(episodes, list)
    assert all(set(e) == SUMMARY_KEYS for e in episodes)
    files = archived_files(corpus.archive)
    assert len(files) == 5
    seed = corpus.archive / "linux-unplugged" / "0603 - All Your Kernels Belong to Rust.mp3"
    assert seed in files
    # Tags as a player sees them; the audio is exactly what was served.
    chapters = ffprobe_chapters(seed)
    assert [c[2] for c in chapters][:2] == ["Intro", "Interview with Hannah Anderson"]
    assert ffprobe(seed)["format"]["tags"]["title"] == "All Your Kernels Belong to Rust"
    assert ID3(seed).getall("APIC")[0].data == PNG_COVER
    guid = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"
    assert payload_sha256(seed) == hashlib.sha256(corpus.audio[guid]).hexdigest()
    # The cover was fetched once for all five episodes.
    assert len(corpus.server.requests_to("/images/shows/linux-unplugged.png")) == 1
    # Nothing is left behind in the partial directory.
    assert list((corpus.archive / ".fetcher" / "partial").iterdir()) == []
    # The manifest describes every file.
    db = sqlite3.connect(corpus.archive / ".fetcher" / "manifest.sqlite3")
    rows = db.execute("SELECT path, file_bytes, tag_sha256, audio_sha256 FROM episodes").fetchall()
    assert len(rows) == 5
    for path, size, tag_hash, audio_hash in rows:
        data = (corpus.archive / path).read_bytes()
        tag_size = id3v2_size(data[:10])
        assert tag_size is not None and len(data) == size
        assert hashlib.sha256(data[:tag_size]).hexdigest() == tag_hash
        assert hashlib.sha256(data[tag_size:]).hexdigest() == audio_hash


def test_second_run_is_a_no_op_without_audio_requests(corpus: Corpus) -> None:
    config = corpus.config()
    assert sync_json(config)[0] == 0
    before = {p: p.stat().st_mtime_ns for p in archived_files(corpus.archive)}
    corpus.server.reset_stats()
    code, summary = sync_json(config)
    assert code == 0
    assert summary["counts"]["up_to_date"] == 5  # type: ignore[index]
    assert corpus.server.log == []
    assert {p: p.stat().st_mtime_ns for p in archived_files(corpus.archive)} == before


def test_json_lists_every_episode_as_the_library_reports_them(corpus: Corpus) -> None:
    """--json writes up-to-date episodes as planning finds them (nothing held per
    episode): the document is the one the library's full report gives."""
    config = corpus.config()
    assert sync_json(config)[0] == 0
    corpus.edit("ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf", title="Retitled")
    result = run("sync", "-c", str(config), "--json")
    assert result.returncode == 0 and result.stdout.count("\n") == 1, result.stderr
    streamed = json.loads(result.stdout)
    assert streamed["counts"]["retagged"] == 1 and streamed["counts"]["up_to_date"] == 4
    assert streamed["ok"] is True and streamed["interrupted"] is False
    assert [s["status"] for s in streamed["sources"]] == ["ok"]
    listed = streamed["episodes"]
    assert len(listed) == 5 and all(set(e) == SUMMARY_KEYS for e in listed)
    # The library's report of a run with nothing to do lists the same episodes.
    report = fetcher.sync(fetcher.load_config(config))
    expected = [render.outcome_json(o) for o in report.outcomes]
    by_guid = {e["guid"]: e for e in listed}
    for entry in expected:
        assert by_guid[entry["guid"]] | {"status": "up_to_date", "reason": entry["reason"],
                                         "bytes": entry["bytes"]} == entry


def test_metadata_edit_retags_without_download(corpus: Corpus) -> None:
    config = corpus.config()
    sync_json(config)
    guid = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"
    corpus.edit(guid, title="All Your Kernels Belong to Rust (corrected)")
    corpus.server.reset_stats()
    code, summary = sync_json(config)
    assert code == 0
    assert summary["counts"]["retagged"] == 1 and summary["counts"]["up_to_date"] == 4  # type: ignore[index]
    assert corpus.audio_requests() == []
    path = corpus.archive / "linux-unplugged" / "0603 - All Your Kernels Belong to Rust.mp3"
    assert ffprobe(path)["format"]["tags"]["title"].endswith("(corrected)")
    assert payload_sha256(path) == hashlib.sha256(corpus.audio[guid]).hexdigest()
    assert run("verify", "-c", str(config)).returncode == 0


def test_truncated_archived_file_is_fetched_again(corpus: Corpus) -> None:
    config = corpus.config()
    sync_json(config)
    victim = archived_files(corpus.archive)[0]
    with victim.open("r+b") as file:
        file.truncate(victim.stat().st_size // 2)
    corpus.server.reset_stats()
    code, summary = sync_json(config)
    assert code == 0
    assert summary["counts"]["downloaded"] == 1  # type: ignore[index]
    assert len(corpus.audio_requests()) == 1
    assert run("verify", "-c", str(config)).returncode == 0


def test_deleted_file_is_fetched_again(corpus: Corpus) -> None:
    config = corpus.config()
    sync_json(config)
    archived_files(corpus.archive)[1].unlink()
    code, summary = sync_json(config)
    assert code == 0 and summary["counts"]["downloaded"] == 1  # type: ignore[index]


def test_verify_catches_a_flipped_byte(corpus: Corpus) -> None:
    config = corpus.config()
    sync_json(config)
    assert run("verify", "-c", str(config)).returncode == 0
    victim = archived_files(corpus.archive)[2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    result = run("verify", "-c", str(config), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [p["problem"] for p in report["problems"]] == [
        "altered: the audio differs from what was archived"
    ]
    assert victim.name in result.stderr


def test_second_concurrent_sync_exits_3(corpus: Corpus) -> None:
    config = corpus.config()
    archive = Archive(corpus.archive)
    archive.prepare()
    with archive.lock():
        result = run("sync", "-c", str(config))
        as_json = run("sync", "-c", str(config), "--json")
    assert result.returncode == 3
    assert json.loads(as_json.stdout)["error"]["code"] == 3 and as_json.returncode == 3
    assert "another fetcher sync is running" in result.stderr
    assert "Traceback" not in result.stderr
    assert corpus.audio_requests() == []


def test_dry_run_writes_nothing(corpus: Corpus) -> None:
    config = corpus.config()
    result = run("sync", "-c", str(config), "--dry-run")
    assert result.returncode == 0
    assert "dry run: 5 download" in result.stdout
    assert not corpus.archive.exists()
    assert corpus.server.log == []
    sync_json(config)
    corpus.edit("ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf", title="new")
    manifest = corpus.archive / ".fetcher" / "manifest.sqlite3"
    before = manifest.read_bytes()
    result = run("sync", "-c", str(config), "--dry-run", "--json")
    plan = json.loads(result.stdout)
    assert plan["counts"]["retag"] == 1 and plan["counts"]["up_to_date"] == 4
    assert manifest.read_bytes() == before


def test_one_failure_does_not_stop_the_others(corpus: Corpus) -> None:
    guid = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"
    corpus.server.add(f"/audio/{guid}.mp3", body=b"<html>gone</html>", content_type="text/html")
    code, summary = sync_json(corpus.config())
    assert code == 1
    assert summary["counts"]["failed"] == 1 and summary["counts"]["downloaded"] == 4  # type: ignore[index]
    failed = [e for e in summary["episodes"] if e["status"] == "failed"]  # type: ignore[union-attr]
    assert "not audio" in failed[0]["error"] and failed[0]["guid"] == guid
    assert len(archived_files(corpus.archive)) == 4
    # "Not audio" is a permanent failure: the next (hourly) run defers it, exit 0 ...
    corpus.server.add(f"/audio/{guid}.mp3", body=corpus.audio[guid])
    corpus.server.reset_stats()
    code, summary = sync_json(corpus.config())
    assert code == 0 and summary["counts"]["deferred"] == 1  # type: ignore[index]
    deferred = [e for e in summary["episodes"] if e["status"] == "deferred"]  # type: ignore[union-attr]
    assert deferred[0]["next_try"] and corpus.audio_requests() == []
    # ... and --retry-failed tries it now: only the failed one.
    code, summary = sync_json(corpus.config(), "--retry-failed")
    assert code == 0 and summary["counts"]["downloaded"] == 1  # type: ignore[index]


def test_bad_document_is_reported_and_the_rest_archived(corpus: Corpus) -> None:
    (corpus.docs / "broken.md").write_text('{"title": "x",}', encoding="utf-8")
    (corpus.docs / "_index.md").write_text("+++\ntitle = 'show'\n+++\n", encoding="utf-8")
    code, summary = sync_json(corpus.config())
    assert code == 1
    counts = summary["counts"]
    assert counts["downloaded"] == 5 and counts["failed"] == 1 and counts["skipped"] == 1  # type: ignore[index]
    result = run("sync", "-c", str(corpus.config()))
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "broken.md:1:" in errors[0]


def test_sigterm_mid_run_then_rerun_resumes(corpus: Corpus) -> None:
    guid = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"
    route = f"/audio/{guid}.mp3"
    corpus.server.add(route, body=corpus.audio[guid], drip_delay=0.05, drip_size=4096)
    config = corpus.config(download={"jobs": 1})
    process = subprocess.Popen(
        [sys.executable, "-m", "fetcher", "sync", "-c", str(config), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sent = [e.sent for e in corpus.server.requests_to(route)]
        if sent and sent[0] > 20_000:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert [e["status"] for e in summary["episodes"] if e["guid"] == guid] == ["interrupted"]
    partial = Archive(corpus.archive).partial_path(guid)
    reserve = json.loads(sidecar_path(partial).read_text())["reserve"]
    assert partial.read_bytes()[:3] == b"ID3"  # room for the tag, ahead of the body
    kept = partial.stat().st_size - reserve
    assert kept > 0
    # Nothing under a final name is incomplete.
    assert run("verify", "-c", str(config)).returncode == 0

    corpus.server.add(route, body=corpus.audio[guid])
    corpus.server.reset_stats()
    code, summary = sync_json(config)
    assert code == 0
    resumed = corpus.server.requests_to(route)
    assert resumed[0].headers["range"] == f"bytes={kept}-" and resumed[0].status == 206
    seed = corpus.archive / "linux-unplugged" / "0603 - All Your Kernels Belong to Rust.mp3"
    assert payload_sha256(seed) == hashlib.sha256(corpus.audio[guid]).hexdigest()


def test_config_errors_name_the_key_and_exit_2(corpus: Corpus) -> None:
    config = corpus.config(download={"jobz": 3})
    result = run("sync", "-c", str(config))
    assert result.returncode == 2
    assert "[download.jobz] unknown key" in result.stderr
    config = corpus.config(download={"jobs": "many"})
    result = run("sync", "-c", str(config))
    assert result.returncode == 2 and "[download.jobs] must be a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_archive_exits_2(corpus: Corpus, tmp_path: Path) -> None:
    # A file where a directory must be: unwritable even for root.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    result = run("sync", "-c", str(corpus.config(archive={"dir": str(blocker / "a")})))
    assert result.returncode == 2
    assert "archive directory is not writable" in result.stderr
    assert "Traceback" not in result.stderr
    assert corpus.audio_requests() == []


def test_tag_command_tags_one_file(corpus: Corpus, tmp_path: Path) -> None:
    guid = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"
    mp3 = tmp_path / "mine.mp3"
    mp3.write_bytes(corpus.audio[guid])
    result = run("tag", str(mp3), str(corpus.paths[guid]), "-c", str(corpus.config()))
    assert result.returncode == 0, result.stderr
    assert ffprobe(mp3)["format"]["tags"]["title"] == "All Your Kernels Belong to Rust"
    assert ffprobe_chapters(mp3)[0][2] == "Intro"


def test_corpus_docs_are_the_real_quirky_ones() -> None:
    assert len(CORPUS_DOCS) == 5


def test_a_streamed_json_report_stays_one_json_document_when_the_run_fails() -> None:
    written: list[str] = []
    stream = render.StreamedReport(written.append)
    assert stream.fail(1, "nothing written yet") is False and written == []
    outcome = fetcher.Outcome(fetcher.Status.UP_TO_DATE, "docs/a.md", reason="archived")
    stream.episode(outcome)
    stream.episode(outcome)
    assert stream.fail(1, "the manifest is damaged") is True
    document = json.loads("".join(written))
    assert len(document["episodes"]) == 2
    assert document["ok"] is False
    assert document["error"] == {"code": 1, "message": "the manifest is damaged"}
