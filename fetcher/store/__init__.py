"""Where the archive lives, behind one small interface.

:class:`Store` is what the rest of fetcher asks of an archive: prepare it, hold its
lock, resolve an archived file (never through a link, never outside), commit a staged
file under its final name, and the places of its manifest, partial files and journal.
:class:`~fetcher.store.local.Archive` is the one implementation today (a local
directory); an object store would be a second module here with the same methods.
The manifest (:mod:`fetcher.store.manifest`) and the filename layout
(:mod:`fetcher.store.layout`) are shared by every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import Protocol

from fetcher.store.local import Archive


class Store(Protocol):
    @property
    def root(self) -> Path: ...
    @property
    def manifest_path(self) -> Path: ...
    @property
    def journal_dir(self) -> Path: ...
    def partial_path(self, guid: str) -> Path: ...
    def url_hasher(self) -> Callable[[str], str] | None: ...
    def absolute(self, relative: PurePosixPath | str) -> Path: ...
    def absolute_text(self, relative: PurePosixPath | str) -> str: ...
    def prepare(self) -> None: ...
    def lock(self) -> AbstractContextManager[None]: ...
    def existing_file(self, relative: PurePosixPath | str) -> Path: ...
    def existing_target(self, path: Path) -> Path: ...
    def commit(self, partial: Path, relative: PurePosixPath) -> Path: ...


__all__ = ["Archive", "Store"]
