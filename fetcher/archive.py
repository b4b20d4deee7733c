"""The archive on disk: where each episode's file goes, the lock, the atomic commit.

Layout: ``ARCHIVE/<filename template>`` for the audio, ``ARCHIVE/.fetcher/`` for what
fetcher keeps (manifest, lock, partial downloads, tag journal). Partial files live
inside the archive, so committing is a rename on one filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import string
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from fetcher.errors import ArchiveError, ArchiveLockedError
from fetcher.model import Episode

DEFAULT_TEMPLATE = "{show_slug}/{episode_padded} - {title}.mp3"
STATE_DIR = ".fetcher"
MAX_NAME_BYTES = 255
_RESERVED = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_WINDOWS_NAMES = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.IGNORECASE)

#: Fields a template may name besides the Episode's own.
EXTRA_FIELDS = ("year", "guid_short")


def template_fields() -> set[str]:
    return {f.name for f in fields(Episode)} | set(EXTRA_FIELDS)


def check_template(template: str) -> None:
    """Raise ValueError when *template* names an unknown field or is malformed."""
    if not template.strip():
        raise ValueError("the filename template is empty")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed template: {exc}") from None
    known = template_fields()
    for _text, name, _spec, _conversion in parsed:
        if name is None:
            continue
        if name == "" or name.split(".")[0].split("[")[0] not in known:
            raise ValueError(
                f"unknown field {{{name}}} in the filename template "
                f"(known: {', '.join(sorted(known))})"
            )
    if template.endswith("/"):
        raise ValueError("the filename template must name a file, not a directory")


def sanitise_component(text: str, *, keep_suffix: str = "") -> str:
    """One safe path component: no separators or control characters, no leading dots,
    reserved characters replaced, at most 255 bytes in UTF-8 with *keep_suffix* kept."""
    text = unicodedata.normalize("NFC", text)
    text = _RESERVED.sub("_", text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else "_" for ch in text)
    text = re.sub(r"\s+", " ", text).strip()
    text = text.lstrip(".").rstrip(". ")
    stem = text[: -len(keep_suffix)] if keep_suffix and text.endswith(keep_suffix) else text
    stem = stem.rstrip(". ")
    if not stem or _WINDOWS_NAMES.match(stem):
        stem = f"_{stem}"
    budget = MAX_NAME_BYTES - len(keep_suffix.encode("utf-8"))
    encoded = stem.encode("utf-8")
    if len(encoded) > budget:
        stem = encoded[:budget].decode("utf-8", errors="ignore").rstrip(". ")
    return stem + keep_suffix


def _field_value(value: Any) -> Any:
    if isinstance(value, str):
        # Separators inside a value must not become directories.
        return value.replace("/", "_").replace("\\", "_")
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value).replace("/", "_")
    return value


def episode_fields(episode: Episode) -> dict[str, Any]:
    values: dict[str, Any] = {f.name: _field_value(getattr(episode, f.name))
                              for f in fields(episode)}
    values["episode"] = "" if episode.episode is None else episode.episode
    values["year"] = f"{episode.date:%Y}"
    values["guid_short"] = hashlib.sha1(episode.guid.encode()).hexdigest()[:8]
    return values


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def render_path(template: str, episode: Episode) -> PurePosixPath:
    """The archive-relative path *template* gives *episode*, every component sanitised."""
    values = _Blank(episode_fields(episode))
    raw = string.Formatter().vformat(template, (), values)
    parts = [p for p in raw.split("/") if p.strip()]
    if not parts:
        parts = [episode.guid]
    suffix = Path(parts[-1]).suffix.lower() if "." in parts[-1] else ""
    if not suffix or len(suffix) > 6:
        suffix = ".mp3"
        parts[-1] = parts[-1] + suffix
    clean = [sanitise_component(p) for p in parts[:-1]]
    clean.append(sanitise_component(parts[-1], keep_suffix=suffix))
    return PurePosixPath(*clean)


def with_suffix_for(path: PurePosixPath, guid: str) -> PurePosixPath:
    """A deterministic variant of *path* for a second episode that maps to it."""
    tag = hashlib.sha1(guid.encode()).hexdigest()[:8]
    name = sanitise_component(f"{path.stem} [{tag}]{path.suffix}", keep_suffix=path.suffix)
    return path.with_name(name)


@dataclass(frozen=True, slots=True)
class Archive:
    """An archive directory and the paths fetcher uses inside it."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def manifest_path(self) -> Path:
        return self.state / "manifest.sqlite3"

    @property
    def journal_dir(self) -> Path:
        return self.state / "journal"

    def partial_path(self, guid: str) -> Path:
        return self.state / "partial" / (hashlib.sha1(guid.encode()).hexdigest() + ".mp3.part")

    def absolute(self, relative: PurePosixPath | str) -> Path:
        """The absolute path of an archive-relative path, refusing anything outside."""
        # String checks, not pathlib: the planner calls this once per archived episode.
        text = str(relative)
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if text.startswith("/") or ".." in parts or not parts:
            raise ArchiveError(f"{relative}: path leaves the archive")
        if parts[0] == STATE_DIR:
            raise ArchiveError(f"{relative}: path is inside fetcher's own state directory")
        return Path(f"{self.root}/{'/'.join(parts)}")

    def existing_file(self, relative: PurePosixPath | str) -> Path:
        """An archived file to change in place: a regular file inside the archive, not
        a symbolic link, with no symbolic link on the way (a planted link is never
        followed out of the archive)."""
        path = self.absolute(relative)
        current = self.root
        for part in path.relative_to(self.root).parts:
            current = current / part
            if current.is_symlink():
                raise ArchiveError(f"{current}: is a symbolic link; refusing to follow it")
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise ArchiveError(f"{path}: path leaves the archive")
        return path

    def prepare(self) -> None:
        """Create the archive and state directories; fail clearly when unwritable."""
        try:
            for directory in (self.root, self.state, self.state / "partial"):
                directory.mkdir(parents=True, exist_ok=True)
            probe = self.state / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ArchiveError(
                f"{self.root}: archive directory is not writable ({exc.strerror or exc})"
            ) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the archive's lock; ArchiveLockedError at once when another holds it."""
        path = self.state / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    who = f" (pid {holder})" if holder else ""
                    raise ArchiveLockedError(
                        f"{self.root}: another fetcher sync is running on this archive{who}"
                    ) from None
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    def commit(self, partial: Path, relative: PurePosixPath) -> Path:
        """Move a verified, tagged partial file to its final name, durably.

        The file is already fsynced; the rename is atomic; the directory is fsynced
        after it. Directories on the way must be real directories inside the archive.
        """
        target = self.absolute(relative)
        self._make_parents(target)
        partial.replace(target)
        fsync_directory(target.parent)
        return target

    def _make_parents(self, target: Path) -> None:
        root = self.root.resolve()
        current = self.root
        for part in target.relative_to(self.root).parts[:-1]:
            current = current / part
            try:
                current.mkdir()
            except FileExistsError:
                pass  # made earlier, or a moment ago by another episode's commit
            else:
                fsync_directory(current.parent)
            if current.is_symlink():
                raise ArchiveError(f"{current}: is a symbolic link; refusing to follow it")
            if not current.is_dir():
                raise ArchiveError(f"{current}: is in the way of an archive directory")
        if not target.parent.resolve().is_relative_to(root):
            raise ArchiveError(f"{target}: path leaves the archive")
        if target.is_symlink():
            raise ArchiveError(f"{target}: is a symbolic link; refusing to replace it")


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")
