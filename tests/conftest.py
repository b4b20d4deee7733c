"""Shared test parts: episode-document builders (more parts join as stages arrive)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fetcher.model import Episode
from fetcher.sources.frontmatter import read_document

FIXTURES = Path(__file__).parent / "fixtures"
DOCS = FIXTURES / "docs"
SEED_DOC = DOCS / "seed-0603.md"


def seed_episode() -> Episode:
    """Episode 603 of the shared corpus, read by the real source."""
    entry = read_document(SEED_DOC)[0]
    assert isinstance(entry, Episode)
    return entry


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


# --- an archive-ready corpus served from the loopback server ------------------------

from dataclasses import dataclass, field  # noqa: E402

from mp3factory import mp3_bytes  # noqa: E402

CORPUS_DOCS = (
    "seed-0603.md",
    "no-chapters-0001.md",
    "duplicate-chapters-0474.md",
    "float-chapter-times-0616.md",
    "string-bytes-0553.md",
)
PNG_COVER = b"\x89PNG\r\n\x1a\n" + bytes(64)


@dataclass
class Corpus:
    """Real episode documents rewritten to fetch generated audio from the test server."""

    server: TestServer
    docs: Path
    archive: Path
    audio: dict[str, bytes] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    def audio_requests(self) -> list[str]:
        return [e.path for e in self.server.log if e.path.startswith("/audio/")]

    def config(self, **sections: dict[str, Any]) -> Path:
        """Write a config for this corpus; *sections* add or override keys."""
        data: dict[str, dict[str, Any]] = {
            "archive": {"dir": str(self.archive)},
            "sources": {"paths": [str(self.docs)]},
            "download": {"retries": 2, "backoff": 0.01, "timeout": 5.0},
            "tags": {"image_base_url": self.server.url("/")},
        }
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        lines = []
        for name, values in data.items():
            lines.append(f"[{name}]")
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
        path = self.docs.parent / "fetcher.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def edit(self, guid: str, **changes: Any) -> None:
        path = self.paths[guid]
        obj, body = split_document(path)
        obj.update(changes)
        path.write_text(render_document(obj, body), encoding="utf-8")


@pytest.fixture
def corpus(server: TestServer, tmp_path: Path) -> Corpus:
    docs = tmp_path / "docs"
    docs.mkdir()
    result = Corpus(server, docs, tmp_path / "archive")
    server.add("/images/shows/linux-unplugged.png", body=PNG_COVER, content_type="image/png")
    for index, name in enumerate(CORPUS_DOCS):
        obj, body = split_document(DOCS / name)
        guid = obj["episode_guid"]
        # The seed plays past its second chapter (1:43); the others are short.
        duration = 110_000 if name == "seed-0603.md" else 4_000 + 1_000 * index
        audio = mp3_bytes(duration, seed=index)
        route = f"/audio/{guid}.mp3"
        server.add(route, body=audio)
        obj["podcast_file"] = server.url(route)
        # Keep the document's quirk: a size given as a string stays a string.
        was_text = isinstance(obj.get("podcast_bytes"), str)
        obj["podcast_bytes"] = str(len(audio)) if was_text else len(audio)
        target = docs / name
        target.write_text(render_document(obj, body), encoding="utf-8")
        result.audio[guid] = audio
        result.paths[guid] = target
    return result
