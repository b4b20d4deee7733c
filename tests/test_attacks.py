"""An attacker with write access to the archive directory: links planted in the state
directory and on the way to archived files, hostile manifest rows, secrets at rest.
Every test runs the real CLI against the loopback server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from support.corpus import Corpus

from fetcher.store.local import Archive

SEED_GUID = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fetcher", *args], capture_output=True,
                          text=True, timeout=120)


def manifest_rows(corpus: Corpus) -> list[tuple[str, str]]:
    with sqlite3.connect(corpus.archive / ".fetcher" / "manifest.sqlite3") as db:
        return db.execute("SELECT guid, path FROM episodes").fetchall()


def set_path(corpus: Corpus, guid: str, path: str) -> None:
    db = sqlite3.connect(corpus.archive / ".fetcher" / "manifest.sqlite3")
    with db:
        db.execute("UPDATE episodes SET path = ? WHERE guid = ?", (path, guid))
    db.close()


def test_repair_never_moves_files_reached_through_a_linked_show_directory(
    corpus: Corpus, tmp_path: Path
) -> None:
    config = corpus.config()
    assert cli("sync", "-c", str(config)).returncode == 0
    show = corpus.archive / "linux-unplugged"
    elsewhere = tmp_path / "elsewhere"
    show.rename(elsewhere)
    show.symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    result = cli("verify", "-c", str(config), "--repair")
    assert result.returncode == 1 and "is a symbolic link" in result.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == before  # nothing moved away
    assert not (corpus.archive / ".fetcher" / "damaged").exists()


def test_repair_never_moves_files_named_by_hostile_manifest_rows(
    corpus: Corpus, tmp_path: Path
) -> None:
    config = corpus.config()
    assert cli("sync", "-c", str(config)).returncode == 0
    victims = [tmp_path / "victim-absolute.mp3", corpus.archive.parent / "victim-up.mp3"]
    for victim in victims:
        victim.write_bytes(b"not fetcher's")
    guids = [guid for guid, _ in manifest_rows(corpus)][:2]
    set_path(corpus, guids[0], str(victims[0]))
    set_path(corpus, guids[1], "../victim-up.mp3")
    result = cli("verify", "-c", str(config), "--repair")
    assert result.returncode == 1 and "path leaves the archive" in result.stderr
    assert all(v.read_bytes() == b"not fetcher's" for v in victims)


def test_a_linked_partial_file_is_refused_and_its_target_untouched(
    corpus: Corpus, tmp_path: Path
) -> None:
    config = corpus.config()
    archive = Archive(corpus.archive)
    archive.prepare()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    archive.partial_path(SEED_GUID).symlink_to(victim)
    result = cli("sync", "-c", str(config))
    assert result.returncode == 1 and "is a symbolic link" in result.stderr
    assert victim.read_bytes() == b"precious"
    for path in corpus.archive.rglob("*.mp3"):
        assert not path.is_symlink() or ".fetcher" in path.parts


def test_a_linked_lock_file_is_refused(corpus: Corpus, tmp_path: Path) -> None:
    config = corpus.config()
    Archive(corpus.archive).prepare()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (corpus.archive / ".fetcher" / "lock").symlink_to(victim)
    result = cli("sync", "-c", str(config))
    assert result.returncode == 2 and "is a symbolic link" in result.stderr
    assert victim.read_bytes() == b"precious"


def test_a_linked_state_directory_is_refused(corpus: Corpus, tmp_path: Path) -> None:
    config = corpus.config()
    outside = tmp_path / "outside-state"
    outside.mkdir()
    corpus.archive.mkdir()
    (corpus.archive / ".fetcher").symlink_to(outside)
    result = cli("sync", "-c", str(config))
    assert result.returncode == 2 and ".fetcher: is a symbolic link" in result.stderr
    assert list(outside.iterdir()) == []  # no manifest, lock or partial went there
    (corpus.archive / ".fetcher").unlink()
    (corpus.archive / ".fetcher").mkdir()
    (corpus.archive / ".fetcher" / "partial").symlink_to(outside)
    result = cli("sync", "-c", str(config))
    assert result.returncode == 2 and "partial: is a symbolic link" in result.stderr
    assert list(outside.iterdir()) == []


def test_a_corrupted_manifest_page_is_exit_2_not_a_traceback(corpus: Corpus) -> None:
    config = corpus.config()
    assert cli("sync", "-c", str(config)).returncode == 0
    manifest = corpus.archive / ".fetcher" / "manifest.sqlite3"
    db = sqlite3.connect(manifest)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(manifest.read_bytes())
    assert len(data) >= 8192
    data[4096 + 8:8192] = b"\xa5" * (8192 - 4096 - 8)  # the episodes table's page
    manifest.write_bytes(bytes(data))
    for command in (["verify"], ["sync"]):
        result = cli(*command, "-c", str(config))
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "manifest is damaged" in result.stderr and "verify --rebuild" in result.stderr


def test_tokens_never_reach_the_disk(corpus: Corpus) -> None:
    secret = "SECRET-TOKEN-456"
    for index, guid in enumerate(corpus.audio):
        route = f"/audio/{guid}.mp3"
        if index == 0:  # leave a partial file and its sidecar behind
            corpus.server.add(route, body=corpus.audio[guid], drop_after=[20_000] * 9)
        corpus.edit(guid, podcast_file=corpus.server.url(f"{route}?token={secret}"))
    config = corpus.config(download={"retries": 0})
    cli("sync", "-c", str(config))
    for path in (corpus.archive / ".fetcher").rglob("*"):
        if path.is_file() and path.name != "url-key":
            assert secret.encode() not in path.read_bytes(), path
    shown = cli("show", str(corpus.docs), "--json")
    assert secret not in shown.stdout
    # A changed token is still noticed (the keyed hash differs): that episode is new work.
    guid = next(iter(corpus.audio))
    corpus.server.add(f"/audio/{guid}.mp3", body=corpus.audio[guid])
    corpus.edit(guid, podcast_file=corpus.server.url(f"/audio/{guid}.mp3?token=rotated"))
    plan = json.loads(cli("sync", "-c", str(config), "--dry-run", "--json").stdout)
    reasons = {e["guid"]: e["reason"] for e in plan["episodes"]}
    assert "resume" in reasons[guid] or reasons[guid].startswith("new episode")
    assert "SECRET" not in json.dumps(plan) and "rotated" not in json.dumps(plan)


def test_manifests_of_the_first_schema_are_sealed(corpus: Corpus) -> None:
    config = corpus.config()
    assert cli("sync", "-c", str(config)).returncode == 0
    db = sqlite3.connect(corpus.archive / ".fetcher" / "manifest.sqlite3")
    with db:  # what an older fetcher left: the whole URL, no hash
        db.execute("UPDATE episodes SET url = url || '?token=OLD-SECRET', url_hash = NULL")
    db.close()
    result = cli("sync", "-c", str(config), "--json")
    assert result.returncode == 0
    data = (corpus.archive / ".fetcher" / "manifest.sqlite3").read_bytes()
    wal = corpus.archive / ".fetcher" / "manifest.sqlite3-wal"
    if wal.exists():
        data += wal.read_bytes()
    assert b"OLD-SECRET" not in data  # not in a row, nor in freed pages or the log


def test_stray_temporary_files_are_reported_and_repaired(corpus: Corpus) -> None:
    config = corpus.config()
    assert cli("sync", "-c", str(config)).returncode == 0
    stray = corpus.archive / "linux-unplugged" / "0603 - x.mp3.tagging"
    stray.write_bytes(b"half a rewrite")
    result = cli("verify", "-c", str(config))
    assert result.returncode == 1 and "0603 - x.mp3.tagging: stray temporary" in result.stderr
    assert cli("verify", "-c", str(config), "--repair").returncode == 1
    assert not stray.exists()
    assert cli("verify", "-c", str(config)).returncode == 0


def test_verify_on_a_directory_that_is_not_an_archive(tmp_path: Path) -> None:
    result = cli("verify", "-o", str(tmp_path))
    assert result.returncode == 2 and "not a fetcher archive" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / ".fetcher").exists()


def test_a_planted_journal_never_writes_outside_the_archive(
    corpus: Corpus, tmp_path: Path
) -> None:
    config = corpus.config()
    assert cli("sync", "-c", str(config)).returncode == 0
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    journal = corpus.archive / ".fetcher" / "journal"
    journal.mkdir(exist_ok=True)
    (journal / "planted.bytes").write_bytes(b"attacker")
    (journal / "planted.json").write_text(json.dumps(
        {"path": str(victim), "head": 8, "size": 8}))
    result = cli("verify", "-c", str(config))
    assert result.returncode == 0 and "outside the archive; journal refused" in result.stderr
    assert victim.read_bytes() == b"precious"
    assert not (journal / "planted.json").exists()


def test_hard_links_and_fifos_in_the_state_directory_are_refused(
    corpus: Corpus, tmp_path: Path
) -> None:
    config = corpus.config()
    archive = Archive(corpus.archive)
    archive.prepare()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.link(victim, archive.partial_path(SEED_GUID))
    os.mkfifo(archive.partial_path(next(g for g in corpus.audio if g != SEED_GUID)))
    result = cli("sync", "-c", str(config))
    assert result.returncode == 1
    assert "hard links" in result.stderr and "not a regular file" in result.stderr
    assert victim.read_bytes() == b"precious"
