"""Shared fixtures; the helpers they use live in tests/support/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.corpus import Corpus, build_corpus
from support.docs import SEED_DOC, DocFactory, render_document, split_document
from support.httpserver import TestServer


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


@pytest.fixture
def server() -> Iterator[TestServer]:
    with TestServer() as running:
        yield running


@pytest.fixture
def corpus(server: TestServer, tmp_path: Path) -> Corpus:
    return build_corpus(server, tmp_path)


@pytest.fixture(params=["httpx", "direct"])
def body_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test twice: bodies read through httpx, then every body after its first
    bytes read straight from the socket (:mod:`fetcher.net.body`), whatever its size."""
    from fetcher.net import body

    if request.param == "direct":
        monkeypatch.setattr(body, "DIRECT_MIN_BYTES", 1)
    return str(request.param)
