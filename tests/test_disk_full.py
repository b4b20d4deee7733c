"""A disk that really fills up (a small tmpfs): "disk full" is said as such, nothing is
lost, and following the advice given never makes things worse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.corpus import Corpus
from support.disk import fill, small_disk

SEED_GUID = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fetcher", *args], capture_output=True,
                          text=True, timeout=120)


def test_full_disk_is_disk_full_and_rebuild_changes_nothing(
    corpus: Corpus, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", 6 * 1024) as disk:
        corpus.archive = disk / "archive"
        config = corpus.config()
        assert cli("sync", "-c", str(config)).returncode == 0
        manifest = corpus.archive / ".fetcher" / "manifest.sqlite3"
        before = manifest.read_bytes()
        filler = fill(disk)
        corpus.edit(SEED_GUID, title="Retitled while the disk is full")

        synced = cli("sync", "-c", str(config))
        assert "disk full" in synced.stderr, synced.stderr
        assert "damaged" not in synced.stderr and "Traceback" not in synced.stderr
        assert synced.returncode in (1, 2)

        rebuilt = cli("verify", "-c", str(config), "--rebuild")
        assert rebuilt.returncode == 2 and "disk full" in rebuilt.stderr, rebuilt.stderr
        assert manifest.read_bytes() == before  # the good manifest is where it was
        assert not list(manifest.parent.glob("*.rebuilding*"))
        assert not list(manifest.parent.glob("*.old-*"))
        assert not [p for p in (corpus.archive / ".fetcher").rglob("*.tmp")]

        filler.unlink()
        corpus.server.reset_stats()
        result = cli("sync", "-c", str(config), "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["counts"]["downloaded"] == 0
        assert corpus.audio_requests() == []  # nothing fetched again
        assert cli("verify", "-c", str(config)).returncode == 0


def test_full_disk_while_downloading_leaves_no_stray_state(
    corpus: Corpus, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", 1024) as disk:  # the seed (1.8 MB) cannot fit
        corpus.archive = disk / "archive"
        config = corpus.config(download={"retries": 0})
        result = cli("sync", "-c", str(config))
        assert result.returncode in (1, 2) and "Traceback" not in result.stderr
        assert "No space left on device" in result.stderr or "disk full" in result.stderr
        state = corpus.archive / ".fetcher"
        assert not [p for p in state.rglob("*.tmp")]
        for path in corpus.archive.rglob("*.mp3"):
            if ".fetcher" not in path.parts:
                assert path.stat().st_size > 10_000  # whole episodes only
