"""Everything fetcher keeps on disk before a file enters the archive.

- the partial file of a download (:class:`Sink`), with room at its front for the tag;
- its sidecar: the validators a resume needs (:class:`Validators`), later the
  "verified" marker (:func:`mark_verified`) that lets a run finish a complete body
  after a crash instead of downloading it again;
- (the journal of an in-place tag write is in :mod:`fetcher.journal`).

Every state file is opened with ``O_NOFOLLOW`` (a link planted in the state directory
is refused, never followed) and every state write is atomic: a temporary file is
written, fsynced and renamed over the old one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetcher.audio import PayloadHasher, id3v2_header
from fetcher.errors import ArchiveError
from fetcher.model import shallow_dict

log = logging.getLogger(__name__)

#: Bytes read at a time when a partial file is re-hashed or a file is copied.
CHUNK_SIZE = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


# --- safe opens and atomic writes ----------------------------------------------------


def open_nofollow(path: Path, flags: int, mode: int = 0o644, *, one_link: bool = True) -> int:
    """``os.open`` that refuses a symbolic link at *path* with a clear ArchiveError.

    What it opens must be a regular file with one name: a FIFO or device planted in the
    state directory, or a hard link to a file elsewhere, is refused before any write.
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArchiveError(f"{path}: is a symbolic link; refusing to follow it") from exc
        raise
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif one_link and info.st_nlink > 1:
        problem = f"has {info.st_nlink} hard links (one may lead outside the archive)"
    if problem is not None:
        os.close(fd)
        raise ArchiveError(f"{path}: {problem}; refusing to use it")
    os.set_blocking(fd, True)
    return fd


def write_atomic(path: Path, data: bytes, *, sync_directory: bool = False,
                 durable: bool = True) -> None:
    """Replace *path* with *data*: temporary file, fsync, rename (never a torn file).

    With *sync_directory* the rename itself is made durable too; without it a power
    cut may bring the previous version back, which for a sidecar costs only a resume.
    Without *durable* there is no fsync at all: after a power cut the file may be
    empty or old (its readers must treat that as "unknown"); a process crash still
    leaves the old or the new version, whole.
    """
    temporary = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = open_nofollow(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    if sync_directory:
        fsync_directory(path.parent)


def read_state(path: Path, limit: int = 1 << 20) -> bytes:
    """A small state file's bytes, refusing a link; FileNotFoundError when absent."""
    fd = open_nofollow(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as file:
        return file.read(limit)


def fsync_file(path: Path) -> None:
    fd = open_nofollow(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the sidecar: validators, then the verified marker ------------------------------


def sidecar_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def url_digest(url: str) -> str:
    """An unkeyed stand-in for a URL (the archive's keyed hash is used when there is one)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class Validators:
    """What the server said about the body the partial file holds the start of.

    ``url_id`` identifies the URL without holding it (tokens never reach the disk).
    """

    url_id: str
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None
    reserve: int = 0

    def if_range(self) -> str | None:
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A partial file whose bytes are complete and look like audio."""

    path: Path
    size: int
    audio_sha256: str
    etag: str | None
    last_modified: str | None
    expected_bytes: int | None
    resumed_from: int
    #: The room left at the start of ``path`` (an empty ID3 tag) before the body.
    reserve: int = 0
    #: Set when ``size_mismatch = "accept"`` let a size other than the document's pass.
    size_discrepancy: bool = False
    #: Identifies the URL without holding it (see :class:`Validators`).
    url_id: str = ""


def _read_sidecar(partial: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(read_state(sidecar_path(partial)))
    except (OSError, ValueError, ArchiveError):
        return None
    return data if isinstance(data, dict) else None


def load_validators(partial: Path, url_id: str) -> Validators | None:
    data = _read_sidecar(partial)
    if data is None or data.get("url_id") != url_id:
        return None
    etag, modified = data.get("etag"), data.get("last_modified")
    return Validators(
        url_id,
        etag if isinstance(etag, str) else None,
        modified if isinstance(modified, str) else None,
        _whole(data.get("total")),
        _whole(data.get("reserve")) or 0,
    )


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def save_validators(partial: Path, validators: Validators) -> None:
    # Not fsynced: the partial file's own bytes are not either until the body is whole,
    # and a sidecar lost to a power cut costs a download from the start, nothing else.
    write_atomic(sidecar_path(partial), json.dumps(shallow_dict(validators)).encode(),
                 durable=False)


def mark_verified(result: Downloaded) -> None:
    """Record in the sidecar that the partial file is complete and verified.

    From then on the file's length changes as it is tagged, so byte offsets mean
    nothing; a run that stops before the commit finishes the episode from this record
    next time instead of downloading it again.
    """
    record = {"verified": shallow_dict(result)}
    write_atomic(sidecar_path(result.path), json.dumps(record, default=str).encode())


def verified_download(partial: Path, url_id: str) -> Downloaded | None:
    """What :func:`mark_verified` recorded for *partial* and *url_id*, if anything (the
    partial file itself may already have been renamed into the archive)."""
    data = _read_sidecar(partial)
    try:
        info = data["verified"] if data is not None else None
        if info is None or info["url_id"] != url_id:
            return None
        return Downloaded(
            path=partial,
            size=int(info["size"]),
            audio_sha256=str(info["audio_sha256"]),
            etag=info["etag"],
            last_modified=info["last_modified"],
            expected_bytes=info["expected_bytes"],
            resumed_from=int(info["size"]),
            reserve=int(info["reserve"]),
            size_discrepancy=bool(info["size_discrepancy"]),
            url_id=url_id,
        )
    except (ValueError, KeyError, TypeError):
        return None


def discard_partial(partial: Path) -> None:
    """Remove a partial file and its sidecar (both may be absent)."""
    for path in (partial, sidecar_path(partial)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def placeholder_tag(size: int) -> bytes:
    """The header of an empty ID3v2.3 tag *size* bytes long (the rest is padding)."""
    return id3v2_header(size)


# --- the partial file --------------------------------------------------------------


class Sink:
    """The open partial file, hashed as it grows. Its methods block: run them in a thread.

    With a *reserve*, the file starts with an empty ID3 tag of that many bytes and the
    body follows it: the tagger later writes the real tag into that room, so the audio
    is written exactly once. ``size`` counts body bytes only.
    """

    def __init__(self, path: Path, offset: int, reserve: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
        self.file = os.fdopen(fd, "r+b", buffering=0)
        self.reserve = reserve
        self.hasher = PayloadHasher()
        self.size = 0
        if offset:
            self._rehash(offset)
        else:
            self._start()
        self.file.truncate(reserve + offset)
        self.file.seek(reserve + offset)
        self.size = offset

    def _start(self) -> None:
        self.file.seek(0)
        self.file.truncate(0)
        if self.reserve:
            self.file.write(placeholder_tag(self.reserve))
            # Extending by truncate leaves a hole: the padding costs no writes now.
            self.file.truncate(self.reserve)

    def _rehash(self, offset: int) -> None:
        self.file.seek(self.reserve)
        remaining = offset
        while remaining:
            chunk = self.file.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            self.hasher.update(chunk)
            remaining -= len(chunk)

    def head(self, n: int) -> bytes:
        position = self.file.tell()
        self.file.seek(self.reserve)
        data = self.file.read(n)
        self.file.seek(position)
        return data

    def restart(self) -> None:
        self._start()
        self.file.seek(self.reserve)
        self.hasher = PayloadHasher()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = self.file.write(view)
            if written is None:
                raise BlockingIOError("write would block")
            view = view[written:]
        self.hasher.update(data)
        self.size += len(data)

    def finish(self) -> str:
        os.fsync(self.file.fileno())
        return self.hasher.hexdigest()

    def seal(self) -> tuple[bytes, str]:
        """The body's first 16 bytes (for one more sniff: a resumed body was not) and,
        the file fsynced, the audio's SHA-256: one thread hand-off for both."""
        return self.head(16), self.finish()

    def close(self) -> None:
        self.file.close()


def drop_reserve(partial: Path, reserve: int) -> None:
    """Remove the tag room from the front of a partial file whose body turned out not
    to be MP3 (the room is an ID3 tag, which other formats do not begin with)."""
    staged = partial.with_name(partial.name + ".body")
    with partial.open("rb") as source, staged.open("wb") as target:
        source.seek(reserve)
        while chunk := source.read(CHUNK_SIZE):
            target.write(chunk)
        target.flush()
        os.fsync(target.fileno())
    staged.replace(partial)
