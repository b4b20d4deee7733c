"""Crash safety: ``fetcher sync`` killed with SIGKILL at every named point and at random
moments; after each kill nothing under a final name is incomplete or untagged, and the
next run completes, resuming with Range where a download was cut."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mutagen.id3 import ID3
from support.corpus import Corpus
from support.docs import render_document, split_document
from support.mp3factory import mp3_bytes

from fetcher.audio import payload_sha256
from fetcher.failpoints import POINTS
from fetcher.staging import sidecar_path
from fetcher.store.local import Archive
from fetcher.store.manifest import Manifest

SEED_GUID = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"

# Each case runs the CLI two or three times: about 30 s in all. `pytest -m "not slow"`
# leaves them out of a quick local loop; the README's test command (and CI) runs them.
pytestmark = pytest.mark.slow


def sync(config: Path, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("FETCHER_FAILPOINT", None)
    if failpoint:
        env["FETCHER_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, "-m", "fetcher", "sync", "-c", str(config), "-q"],
                          capture_output=True, text=True, timeout=120, env=env)


def verify(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fetcher", "verify", "-c", str(config),
                           *extra], capture_output=True, text=True, timeout=120)


def assert_every_final_file_is_whole(corpus: Corpus) -> int:
    """Every MP3 under a final name holds exactly one served audio and a fetcher tag."""
    served = {hashlib.sha256(audio).hexdigest() for audio in corpus.audio.values()}
    count = 0
    for path in corpus.archive.rglob("*.mp3"):
        if ".fetcher" in path.parts:
            continue
        count += 1
        assert payload_sha256(path) in served, f"{path} is incomplete"
        tags = ID3(path)
        assert tags.version[:2] == (2, 3) and "TGID" in tags, f"{path} is untagged"
    return count


def assert_manifest_agrees(corpus: Corpus) -> None:
    with Manifest.open(corpus.archive / ".fetcher" / "manifest.sqlite3") as manifest:
        for record in manifest.iter_archived():
            assert record.path is not None
            assert (corpus.archive / record.path).stat().st_size == record.file_bytes


def partial_sizes(corpus: Corpus) -> dict[str, tuple[int, int | None]]:
    """Body bytes received and total, per guid, of the partial downloads on disk."""
    archive = Archive(corpus.archive)
    result = {}
    for guid in corpus.audio:
        partial = archive.partial_path(guid)
        sidecar = sidecar_path(partial)
        if partial.exists() and sidecar.exists():
            info = json.loads(sidecar.read_text())
            if "verified" not in info:
                result[guid] = (partial.stat().st_size - info["reserve"], info["total"])
    return result


def verified_partials(corpus: Corpus) -> list[str]:
    archive = Archive(corpus.archive)
    return [
        guid for guid in corpus.audio
        if sidecar_path(archive.partial_path(guid)).exists()
        and "verified" in json.loads(sidecar_path(archive.partial_path(guid)).read_text())
    ]


FIRST_RUN_POINTS = [p for p in POINTS if not p.startswith(("tag-", "retag-"))]


@pytest.mark.parametrize("point", [f"{p}:{n}" for p in FIRST_RUN_POINTS for n in (1, 3)])
def test_kill_during_a_first_run(corpus: Corpus, point: str) -> None:
    config = corpus.config(download={"jobs": 1})
    killed = sync(config, point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_every_final_file_is_whole(corpus)
    if (corpus.archive / ".fetcher" / "manifest.sqlite3").exists():
        assert_manifest_agrees(corpus)
    partials = partial_sizes(corpus)
    verified = verified_partials(corpus)
    corpus.server.reset_stats()
    rerun = sync(config)
    assert rerun.returncode == 0, rerun.stderr
    assert assert_every_final_file_is_whole(corpus) == 5
    assert_manifest_agrees(corpus)
    assert verify(config).returncode == 0
    for guid, (received, total) in partials.items():
        requests = corpus.server.requests_to(f"/audio/{guid}.mp3")
        if total is not None and received == total:
            assert requests == []  # every byte was there: nothing fetched again
        elif received:
            assert requests[0].headers["range"] == f"bytes={received}-"
            assert requests[0].status == 206
    for guid in verified:
        # A body verified before the kill is finished from disk, not downloaded again.
        assert corpus.server.requests_to(f"/audio/{guid}.mp3") == []
    if point.startswith(("download-verified", "tagged", "renamed")):
        assert verified
    assert not list((corpus.archive / ".fetcher" / "partial").iterdir())


@pytest.mark.parametrize("point", ["tag-journaled", "tag-torn", "tag-written", "recorded"])
def test_kill_during_an_in_place_retag(corpus: Corpus, point: str) -> None:
    config = corpus.config()
    assert sync(config).returncode == 0
    corpus.edit(SEED_GUID, title="Retitled")
    killed = sync(config, point)
    assert killed.returncode == -signal.SIGKILL
    # verify rolls the interrupted re-tag back before it checks anything.
    assert verify(config).returncode == 0
    assert assert_every_final_file_is_whole(corpus) == 5
    rerun = sync(config)
    assert rerun.returncode == 0, rerun.stderr
    assert_every_final_file_is_whole(corpus)
    seed = next(corpus.archive.rglob("0603 - *.mp3"))
    assert str(ID3(seed)["TIT2"]) == "Retitled"
    assert verify(config).returncode == 0


@pytest.mark.parametrize("seed", range(4))
def test_kill_at_random_moments(corpus: Corpus, seed: int) -> None:
    rng = random.Random(seed)
    route = f"/audio/{SEED_GUID}.mp3"
    corpus.server.add(route, body=corpus.audio[SEED_GUID], drip_delay=0.002, drip_size=16384)
    config = corpus.config()
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-m", "fetcher", "sync", "-c", str(config),
                                    "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 1.2))
        process.kill()
        process.wait(timeout=30)
        assert_every_final_file_is_whole(corpus)
    corpus.server.add(route, body=corpus.audio[SEED_GUID])
    assert sync(config).returncode == 0
    assert assert_every_final_file_is_whole(corpus) == 5
    assert verify(config).returncode == 0


def test_a_retag_killed_before_its_row_leaves_no_tag_the_manifest_does_not_name(
        corpus: Corpus) -> None:
    # Killed once the new tag is on disk and before its manifest row: when the document
    # then goes back to what was archived, the file must hold the archived tag again
    # (the next start rolls the unrecorded tag back), not the one never recorded.
    config = corpus.config()
    assert sync(config).returncode == 0
    seed = next(corpus.archive.rglob("0603 - *.mp3"))
    archived_title = str(ID3(seed)["TIT2"])
    original = corpus.paths[SEED_GUID].read_bytes()
    corpus.edit(SEED_GUID, title="Never recorded")
    assert sync(config, "tag-written").returncode == -signal.SIGKILL
    corpus.paths[SEED_GUID].write_bytes(original)
    rerun = sync(config)
    assert rerun.returncode == 0, rerun.stderr
    assert str(ID3(seed)["TIT2"]) == archived_title
    checked = verify(config)
    assert checked.returncode == 0, checked.stderr
    assert not list((corpus.archive / ".fetcher" / "journal").glob("*"))


BIG_TITLE = "A title far longer than the padding of the tag " * 300  # about 14 KB


@pytest.mark.parametrize("point", ["retag-rewriting", "retag-rewritten"])
def test_kill_during_a_tag_rewrite_downloads_nothing_again(corpus: Corpus, point: str) -> None:
    config = corpus.config()
    assert sync(config).returncode == 0
    corpus.edit(SEED_GUID, title=BIG_TITLE)  # outgrows the padding: the file is rewritten
    killed = sync(config, point)
    assert killed.returncode == -signal.SIGKILL
    assert_every_final_file_is_whole(corpus)
    corpus.server.reset_stats()
    rerun = sync(config)
    assert rerun.returncode == 0, rerun.stderr
    assert corpus.audio_requests() == []
    seed = next(corpus.archive.rglob("0603 - *.mp3"))
    assert str(ID3(seed)["TIT2"]) == BIG_TITLE.strip()  # titles are trimmed
    assert not list((corpus.archive / ".fetcher" / "journal").glob("*"))
    assert verify(config).returncode == 0


@pytest.mark.parametrize("seed", range(3))
def test_random_kills_over_retags_fetch_no_archived_audio_again(
    corpus: Corpus, seed: int
) -> None:
    """Re-tags (in place and rewrites) and downloads killed at random moments: audio
    that was archived once is never fetched again."""
    rng = random.Random(seed)
    config = corpus.config()
    assert sync(config).returncode == 0
    archived = set(corpus.audio)
    corpus.server.reset_stats()
    for round_ in range(4):
        for guid in archived:
            title = BIG_TITLE if rng.random() < 0.5 else f"Round {round_} {rng.random()}"
            corpus.edit(guid, title=title)
        # A new episode each round: its download is killed at random moments too.
        new_guid = f"new-episode-{round_}"
        obj, body = split_document(corpus.paths[SEED_GUID])
        audio = mp3_bytes(20_000, seed=100 + round_)
        corpus.server.add(f"/audio/{new_guid}.mp3", body=audio, drip_delay=0.002,
                          drip_size=16384)
        obj.update(episode_guid=new_guid, episode=700 + round_, episode_padded="",
                   title=f"New {round_}", podcast_bytes=len(audio),
                   podcast_file=corpus.server.url(f"/audio/{new_guid}.mp3"))
        (corpus.docs / f"{new_guid}.md").write_text(render_document(obj, body))
        corpus.audio[new_guid] = audio
        process = subprocess.Popen([sys.executable, "-m", "fetcher", "sync", "-c",
                                    str(config), "-q"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))
        process.kill()
        process.wait(timeout=30)
        assert_every_final_file_is_whole(corpus)
    assert sync(config).returncode == 0
    refetched = [e for e in corpus.server.log
                 if e.path.startswith("/audio/") and e.path[7:-4] in archived]
    assert sum(e.sent for e in refetched) == 0 and refetched == []
    assert assert_every_final_file_is_whole(corpus) == 5 + 4
    checked = verify(config)
    assert checked.returncode == 0, checked.stderr


def test_a_deleted_manifest_is_refused_then_rebuilt_without_downloads(corpus: Corpus) -> None:
    config = corpus.config()
    assert sync(config).returncode == 0
    for path in (corpus.archive / ".fetcher").glob("manifest.sqlite3*"):
        path.unlink()
    refused = sync(config)
    assert refused.returncode == 2 and "verify --rebuild" in refused.stderr
    assert verify(config, "--rebuild").returncode == 0
    corpus.server.reset_stats()
    assert sync(config).returncode == 0
    assert corpus.audio_requests() == []
    assert verify(config).returncode == 0


def test_a_lost_state_directory_is_rebuilt_from_the_files_tags(corpus: Corpus) -> None:
    import shutil

    config = corpus.config()
    assert sync(config).returncode == 0
    shutil.rmtree(corpus.archive / ".fetcher")
    plain = verify(config)
    assert plain.returncode == 2 and "verify --rebuild" in plain.stderr
    assert verify(config, "--rebuild").returncode == 0
    corpus.server.reset_stats()
    assert sync(config).returncode == 0
    assert corpus.audio_requests() == []
