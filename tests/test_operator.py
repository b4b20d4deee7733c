"""The operator's day through the real CLI: the first run from a clone, help, cron that
stays quiet and honest, documents other archivers refuse, filters, hooks, completion."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mutagen.id3 import ID3
from support.corpus import Corpus

from fetcher.events import Advanced, PlanReady, Started

REPO = Path(__file__).resolve().parents[1]
SEED_GUID = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"


def cli(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fetcher", *args], capture_output=True,
                          text=True, timeout=180, env={**os.environ, **(env or {})}, cwd=cwd)


def sync_json(config: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = cli("sync", "-c", str(config), "--json", *extra)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


# --- first run ------------------------------------------------------------------------


def test_the_example_config_works_from_a_clone_anywhere(tmp_path: Path) -> None:
    clone = tmp_path / "somewhere" / "fetcher"
    clone.mkdir(parents=True)
    shutil.copy(REPO / "config.example.toml", clone)
    shutil.copytree(REPO / "examples", clone / "examples")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    from fetcher.config import load_config

    config = load_config(clone / "config.example.toml")
    local = [Path(p) for p in config.sources.paths]
    assert local and all(p.is_dir() for p in local)
    shown = cli("show", *map(str, local), "--json", cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    episodes = json.loads(shown.stdout)
    seed = next(e for e in episodes if e["episode"] == 603)
    assert len(seed["chapters"]) == 7


def test_a_missing_source_is_exit_2_and_creates_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    result = cli("sync", str(tmp_path / "no-such-dir"), "-o", str(archive))
    assert result.returncode == 2 and "no-such-dir: no such file or directory" in result.stderr
    assert not archive.exists()


def test_a_dry_run_says_how_many_and_how_much(corpus: Corpus) -> None:
    result = cli("sync", "-c", str(corpus.config()), "--dry-run")
    total = sum(len(a) for a in corpus.audio.values())
    assert result.returncode == 0
    assert f"5 to download, {total / 1e6:.1f} MB" in result.stdout
    plan = json.loads(cli("sync", "-c", str(corpus.config()), "--dry-run", "--json").stdout)
    assert plan["download"] == {"episodes": 5, "bytes": total, "unknown_sizes": 0}
    assert not corpus.archive.exists()


def test_help_reads_like_a_manual_and_the_default_config_is_used(
    corpus: Corpus, tmp_path: Path
) -> None:
    main = cli("--help").stdout
    assert "XDG_CONFIG_HOME" in main and "exit codes:" in main and "examples:" in main
    for command in ("sync", "verify", "show", "tag", "export-opml", "completion"):
        text = cli(command, "--help").stdout
        assert "example" in text, command
    sync_help = cli("sync", "--help").stdout
    for flag in ("--since", "--until", "--latest", "--match", "--exclude", "--retry-failed"):
        assert flag in sync_help
    home = tmp_path / "xdg"
    (home / "fetcher").mkdir(parents=True)
    shutil.copy(corpus.config(), home / "fetcher" / "config.toml")
    code = cli("sync", "--json", env={"XDG_CONFIG_HOME": str(home)})
    assert code.returncode == 0 and json.loads(code.stdout)["counts"]["downloaded"] == 5


# --- cron that stays quiet and honest ---------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_one_unreachable_host_is_reported_once_with_a_count(corpus: Corpus) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    for guid in corpus.audio:
        corpus.edit(guid, podcast_file=f"{dead}/audio/{guid}.mp3")
    result = cli("sync", "-c", str(corpus.config(download={"jobs": 1})), "-q")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, lines
    assert "cannot connect" in lines[0]
    assert "unreachable: 5 episodes not archived" in lines[1]


def test_a_missing_cover_is_one_warning_and_retried_next_run(corpus: Corpus) -> None:
    cover = "/images/shows/linux-unplugged.png"
    corpus.server.add(cover, body=b"", statuses=[404] * 50)
    config = corpus.config()
    first = cli("sync", "-c", str(config))
    assert first.returncode == 0
    assert first.stderr.count("a cover could not be fetched") == 1
    assert "LINUX Unplugged" in first.stderr or "linux-unplugged" in first.stderr
    from support.corpus import PNG_COVER

    corpus.server.add(cover, body=PNG_COVER, content_type="image/png")
    code, summary = sync_json(config)
    assert code == 0 and summary["counts"]["retagged"] == 5
    seed = next(corpus.archive.rglob("0603 - *.mp3"))
    assert ID3(seed).getall("APIC")[0].data == PNG_COVER
    code, summary = sync_json(config)
    assert summary["counts"]["up_to_date"] == 5


def test_json_carries_paths_reasons_and_errors(corpus: Corpus) -> None:
    (corpus.docs / "_index.md").write_text("+++\ntitle = 'show'\n+++\n", encoding="utf-8")
    config = corpus.config()
    sync_json(config)
    code, summary = sync_json(config)
    assert code == 0
    by_status: dict[str, list[dict[str, Any]]] = {}
    for episode in summary["episodes"]:
        by_status.setdefault(episode["status"], []).append(episode)
    assert all(Path(e["path"]).is_file() for e in by_status["up_to_date"])
    assert by_status["skipped"][0]["reason"] == "TOML front matter: not an episode page"
    bad = config.with_name("bad.toml")
    bad.write_text("[download]\njobz = 1\n")
    result = cli("sync", "-c", str(bad), "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout) == {"ok": False, "error": {
        "code": 2, "message": f"{bad}: [download.jobz] unknown key (known: jobs, per_host, "
                              "retries, backoff, timeout, user_agent, size_mismatch, "
                              "max_retry_wait, allow_private_addresses, ca_file, proxy)"}}


def test_the_overall_bar_knows_its_total_before_downloads_start() -> None:
    from fetcher.progress import ProgressView

    stream = io.StringIO()
    view = ProgressView(stream, bars=True)
    view(PlanReady(2, 3000))
    totals = []
    view(Started("a", "http://x/a", 0, 1000))
    totals.append(view._overall.total if view._overall else None)
    view(Advanced("a", 1000))
    view(Started("b", "http://x/b", 0, 2000))
    totals.append(view._overall.total if view._overall else None)
    view.close()
    assert totals == [3000, 3000]  # the percentage never goes backwards


# --- documents other archivers refuse --------------------------------------------------


def test_text_episode_numbers_control_characters_and_idna(corpus: Corpus) -> None:
    corpus.edit(SEED_GUID, episode="p01", episode_padded="p01", title="Nul\x00in\x07title",
                jb_url="https://bücher.example/episodes/p01")
    code, summary = sync_json(corpus.config())
    assert code == 0, summary
    seed = next(e for e in summary["episodes"] if e["guid"] == SEED_GUID)
    assert seed["episode"] == "p01" and Path(seed["path"]).name.startswith("p01 - ")
    tags = ID3(seed["path"])
    assert str(tags["TIT2"]) == "Nulintitle" and "TRCK" not in tags
    assert tags["WOAF"].url == "https://xn--bcher-kva.example/episodes/p01"
    raw = Path(seed["path"]).read_bytes()
    start = raw.index(b"WOAF")
    size = int.from_bytes(raw[start + 4:start + 8], "big")
    assert not raw[start + 10:start + 10 + size].endswith(b"\x00")
    result = cli("show", str(corpus.paths[SEED_GUID]))
    assert "control characters removed from the title" in result.stderr


# --- filters ------------------------------------------------------------------------------


def test_filters_on_the_command_line_and_widening_later(corpus: Corpus) -> None:
    config = corpus.config()
    code, summary = sync_json(config, "--latest", "2")
    assert code == 0 and summary["counts"]["downloaded"] == 2
    assert summary["counts"]["skipped"] == 3
    assert all("filtered out" in e["reason"] for e in summary["episodes"]
               if e["status"] == "skipped")
    with sqlite3.connect(corpus.archive / ".fetcher" / "manifest.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM episodes").fetchone()[0] == 2
    code, summary = sync_json(config, "--match", "KERNELS belong", "--exclude", "zzz")
    kept = [e for e in summary["episodes"] if e["status"] != "skipped"]
    assert [e["guid"] for e in kept] == [SEED_GUID] and summary["counts"]["skipped"] == 4
    code, summary = sync_json(config, "--exclude", "kernels")
    assert SEED_GUID in [e["guid"] for e in summary["episodes"] if e["status"] == "skipped"]
    code, summary = sync_json(config, "--since", "2000-01-01", "--until", "2100-01-01")
    assert code == 0 and summary["counts"]["skipped"] == 0
    assert summary["counts"]["downloaded"] + summary["counts"]["up_to_date"] == 5
    bad = cli("sync", "-c", str(config), "--since", "last week")
    assert bad.returncode == 2 and "[--since] must be a date" in bad.stderr


def test_filters_per_source_in_the_config(corpus: Corpus) -> None:
    path = corpus.config()
    text = path.read_text().replace("[sources]\npaths", "[sources]\nold_paths")
    text = text.replace("old_paths = ", "# ")
    text += f'\n[[source]]\npath = "{corpus.docs}"\nmatch = "Rust"\n'
    path.write_text(text)
    code, summary = sync_json(path)
    assert code == 0 and summary["counts"]["downloaded"] == 1


# --- hooks ------------------------------------------------------------------------------


def test_hooks_get_the_episode_and_their_failures_lose_nothing(
    corpus: Corpus, tmp_path: Path
) -> None:
    log = tmp_path / "hook.log"
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, os, sys\n"
        "data = json.load(sys.stdin)\n"
        f"open({str(log)!r}, 'a').write(json.dumps([os.environ.get('FETCHER_GUID'), "
        "os.environ.get('FETCHER_PATH'), data.get('guid'), data.get('counts')]) + '\\n')\n"
        "sys.exit(1 if os.environ.get('FETCHER_GUID') == "
        f"{SEED_GUID!r} else 0)\n")
    config = corpus.config(hooks={"after_episode": [sys.executable, str(script)],
                                  "after_run": [sys.executable, str(script)]})
    result = cli("sync", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "hook" in result.stderr and "failed (exit 1)" in result.stderr
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    per_episode = [r for r in rows if r[0]]
    assert len(per_episode) == 5 and all(r[0] == r[2] for r in per_episode)
    assert all(Path(r[1]).is_file() for r in per_episode)
    assert rows[-1][3]["downloaded"] == 5  # after_run: the summary
    assert len(list(corpus.archive.rglob("*.mp3"))) == 5  # the failing hook lost nothing


# --- completion -------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    result = cli("completion", shell)
    assert result.returncode == 0 and "fetcher" in result.stdout
    assert "_ARGCOMPLETE" in result.stdout


def test_completion_completes_commands(tmp_path: Path) -> None:
    env = {"_ARGCOMPLETE": "1", "COMP_LINE": "fetcher sy", "COMP_POINT": "10",
           "_ARGCOMPLETE_STDOUT_FILENAME": str(tmp_path / "out")}
    cli(env=env)
    assert "sync" in (tmp_path / "out").read_text()



def test_on_a_terminal_the_overall_percentage_never_goes_backwards(corpus: Corpus) -> None:
    import fcntl
    import pty
    import re
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "fetcher", "sync", "-c",
                                str(corpus.config())], stdin=slave, stdout=slave,
                               stderr=slave, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    output = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=120)
    os.close(master)
    assert process.returncode == 0
    text = output.decode(errors="replace")
    assert "5 to download" in text
    overall = [int(m) for m in re.findall(r"all:\s+(\d+)%", text)]
    assert overall and overall == sorted(overall), overall


def test_a_hidden_chapter_leaves_no_gap_through_the_tag_command(
    corpus: Corpus, tmp_path: Path
) -> None:
    from support.mp3factory import write_mp3
    from support.probe import ffprobe_chapters

    chapters = {"version": "1.2.0", "chapters": [
        {"startTime": 0, "title": "Intro"}, {"startTime": 1, "title": "Ad", "toc": False},
        {"startTime": 2, "title": "Main"}]}
    corpus.edit(SEED_GUID, podcast_chapters=chapters)
    mp3 = write_mp3(tmp_path / "ep.mp3", 3_000)
    result = cli("tag", str(mp3), str(corpus.paths[SEED_GUID]), "-c",
                 str(corpus.config(tags={"cover": False})))
    assert result.returncode == 0, result.stderr
    assert ffprobe_chapters(mp3) == [(0, 2_000, "Intro"), (2_000, 3_000, "Main")]
