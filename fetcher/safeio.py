"""Safe file operations for fetcher's own state: opens that refuse links, atomic
writes, fsyncs.

Every state file is opened with ``O_NOFOLLOW`` (a link planted in the state directory
is refused, never followed) and, what is more, must be a regular file with one name;
every state write is atomic: a temporary file is written, fsynced (unless the caller
says the file may be lost) and renamed over the old one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from fetcher.errors import ArchiveError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


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
    fd = _create_new(temporary)
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


def _create_new(path: Path) -> int:
    """A file made afresh at *path* for writing: created here (``O_EXCL``), so that it
    can be nothing but a new regular file with one name; one left by a crash is
    removed first."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    try:
        return os.open(path, flags, 0o644)
    except FileExistsError:
        path.unlink()  # a link planted there is removed, never followed
        return os.open(path, flags, 0o644)


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
