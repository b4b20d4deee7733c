"""Real episode documents rewritten to fetch generated audio from the loopback server."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.docs import DOCS, render_document, split_document
from support.httpserver import TestServer
from support.mp3factory import mp3_bytes

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


def build_corpus(server: TestServer, tmp_path: Path) -> Corpus:
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
