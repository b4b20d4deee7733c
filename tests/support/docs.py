"""Episode-document builders over the real documents in tests/fixtures/docs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fetcher.model import Episode
from fetcher.sources.documents import read_document

FIXTURES = Path(__file__).parent.parent / "fixtures"
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
