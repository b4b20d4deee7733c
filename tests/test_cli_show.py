"""``fetcher show`` through the real entry point, as a subprocess and in process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.docs import DOCS, SEED_DOC, DocFactory

from fetcher.cli import main

SHOW_KEYS = {
    "source", "status", "reason", "guid", "show_slug", "episode", "title", "url",
    "expected_bytes", "chapters", "chapters_source", "transcripts",
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetcher", *args], capture_output=True, text=True, timeout=60
    )


def test_show_json_lists_every_document_with_the_documented_keys() -> None:
    result = run_cli("show", str(DOCS), "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert len(entries) == len(list(DOCS.iterdir()))
    assert all(set(e) == SHOW_KEYS for e in entries)
    seed = next(e for e in entries if e["source"] == str(SEED_DOC))
    assert seed["status"] == "episode"
    assert seed["episode"] == 603 and seed["expected_bytes"] == 58759161
    assert seed["chapters"][0] == {
        "start_ms": 0, "end_ms": 103000, "title": "Intro", "url": None, "toc": True
    }
    assert seed["chapters"][-1]["end_ms"] is None
    statuses = sorted(e["status"] for e in entries)
    assert statuses.count("skipped") == 3


def test_show_text_lists_chapters_in_mm_ss(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(SEED_DOC)]) == 0
    out = capsys.readouterr().out
    assert "linux-unplugged #603  All Your Kernels Belong to Rust" in out
    assert "58.8 MB" in out
    assert "01:43  Interview with Hannah Anderson" in out
    assert "1 episodes, 0 skipped, 0 errors" in out


def test_show_exits_1_on_a_bad_document_and_lists_the_rest(
    make_doc: DocFactory, tmp_path: Path
) -> None:
    make_doc("good.md")
    bad = make_doc("bad.md", podcast_bytes="lots")
    result = run_cli("show", str(tmp_path), "--json")
    assert result.returncode == 1
    entries = json.loads(result.stdout)
    assert [e["status"] for e in entries] == ["error", "episode"]
    assert entries[0]["reason"].startswith(str(bad))
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(error_lines) == 1 and str(bad) in error_lines[0]


def test_usage_error_exits_2() -> None:
    result = run_cli("show")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
