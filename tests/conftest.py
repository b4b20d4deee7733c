"""Shared test parts: episode-document builders (more parts join as stages arrive)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
DOCS = FIXTURES / "docs"
SEED_DOC = DOCS / "seed-0603.md"


def split_document(path: Path) -> tuple[dict[str, Any], str]:
    """The front-matter object and markdown body of a real document."""
    text = path.read_text(encoding="utf-8")
    obj, end = json.JSONDecoder().raw_decode(text)
    return obj, text[end:]


def render_document(obj: dict[str, Any], body: str = "\n\nShow notes.\n") -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + body


DocFactory = Callable[..., Path]


@pytest.fixture
def make_doc(tmp_path: Path) -> DocFactory:
    """Write a variant of the seed document: ``make_doc(name, **overrides)``.

    An override of ``None`` sets the key to JSON null; ``drop=[keys]`` removes keys.
    """
    base, body = split_document(SEED_DOC)
    counter = iter(range(1_000_000))

    def make(
        name: str | None = None,
        *,
        drop: tuple[str, ...] = (),
        body_text: str | None = None,
        directory: Path | None = None,
        **overrides: Any,
    ) -> Path:
        obj = dict(base)
        n = next(counter)
        obj["episode_guid"] = f"guid-{n:04d}"
        obj.update(overrides)
        for key in drop:
            obj.pop(key, None)
        target = (directory or tmp_path) / (name or f"doc-{n:04d}.md")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_document(obj, body if body_text is None else body_text),
                          encoding="utf-8")
        return target

    return make


# --- the loopback HTTP server -------------------------------------------------------

from collections.abc import Iterator  # noqa: E402

from httpserver import TestServer  # noqa: E402


@pytest.fixture
def server() -> Iterator[TestServer]:
    with TestServer() as running:
        yield running


# --- reading files back with ffprobe ------------------------------------------------

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402


def ffprobe(path: Path) -> dict[str, Any]:
    """``ffprobe -show_chapters -show_format`` as JSON; fails in CI when ffprobe is absent."""
    if shutil.which("ffprobe") is None:
        if os.environ.get("CI"):
            pytest.fail("ffprobe is not installed; .ci/run installs Debian's ffmpeg")
        pytest.skip("ffprobe is not installed (apt-get install ffmpeg)")
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_chapters", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def ffprobe_chapters(path: Path) -> list[tuple[int, int, str]]:
    return [
        (int(c["start"]), int(c["end"]), c.get("tags", {}).get("title", ""))
        for c in ffprobe(path)["chapters"]
    ]
