"""Everything fetcher keeps on disk before a file enters the archive.

- the partial file of a download (:class:`Sink`), with room at its front for the tag;
- its sidecar: the validators a resume needs (:class:`Validators`), later the
  "verified" marker (:func:`mark_verified`) that lets a run finish a complete body
  after a crash instead of downloading it again;
- (the journal of an in-place tag write is in :mod:`fetcher.journal`).

State files are opened and written through :mod:`fetcher.safeio`: a planted link is
refused, never followed, and every write is atomic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fetcher.audio import PayloadHasher, id3v2_header, id3v2_size
from fetcher.errors import ArchiveError
from fetcher.model import shallow_dict
from fetcher.safeio import open_nofollow, read_state, write_atomic

log = logging.getLogger(__name__)

#: Bytes read at a time when a partial file is re-hashed or a file is copied.
CHUNK_SIZE = 1 << 20


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

    Neither the record nor the body is fsynced at this point (the file is fsynced once,
    tagged, before it is committed): after a power cut the record may be lost (the
    download starts over) or outlive bytes of the body, so a later run trusts it only
    once the partial file's audio hashes to what it records (:func:`staged_audio_sha256`).
    """
    record = {"verified": shallow_dict(result)}
    write_atomic(sidecar_path(result.path), json.dumps(record, default=str).encode(),
                 durable=False)


def staged_audio_sha256(partial: Path, reserve: int) -> str:
    """The payload hash of a staged partial file, tagged or not yet: until the tag is
    written, the body follows the empty placeholder tag of *reserve* bytes; once it is,
    the tag fills that room and the host's own tag after it."""
    with partial.open("rb") as file:
        header = file.read(10)
        placeholder = id3v2_size(header) == reserve and not file.read(reserve - 10).strip(
            b"\x00")
        hasher = PayloadHasher()
        file.seek(reserve if placeholder else 0)
        while chunk := file.read(CHUNK_SIZE):
            hasher.update(chunk)
    return hasher.hexdigest()


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


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a download of a partial file starts (see :func:`resume_from`)."""

    #: Body bytes already in the partial file that a range request continues after.
    offset: int
    validators: Validators | None
    #: The room kept for the tag at the front of the file.
    reserve: int
    #: A body verified in an earlier run, whole on disk: nothing to download.
    finished: Downloaded | None = None


def resume_from(partial: Path, url_id: str, reserve: int) -> Resume:
    """What the partial file of the URL *url_id* is worth (blocking: a body verified in
    an earlier run is re-hashed before it is trusted); *reserve*: the room a new
    download keeps for the tag. A partial file that cannot be trusted is thrown away."""
    try:
        size = partial.stat().st_size
    except FileNotFoundError:
        return Resume(0, None, reserve)
    finished = verified_download(partial, url_id)
    if finished is not None:
        if staged_audio_sha256(partial, finished.reserve) == finished.audio_sha256:
            return Resume(finished.size, None, finished.reserve, finished)
        log.warning("%s: the body verified in an earlier run has changed on disk "
                    "(a power cut?); downloading it again", partial.name)
        discard_partial(partial)
        return Resume(0, None, reserve)
    validators = load_validators(partial, url_id)
    if validators is None:
        return Resume(0, None, reserve)
    offset = max(size - validators.reserve, 0)
    if offset and validators.if_range() is None:
        log.debug("%s: partial file has no validator; starting over", partial.name)
        return Resume(0, None, reserve)
    if validators.total is not None and offset > validators.total:
        return Resume(0, None, reserve)
    return Resume(offset, validators, validators.reserve)


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
    """The partial file, hashed as it grows. Its methods block: run them in a thread.

    With a *reserve*, the file starts with an empty ID3 tag of that many bytes and the
    body follows it: the tagger later writes the real tag into that room, so the audio
    is written exactly once. ``size`` counts body bytes only.

    A new download's file is made by its first write (in the thread that writes the
    body, not in the event loop, and not at all when no byte arrives); resuming at
    *offset* opens the file at once and re-hashes what it holds.
    """

    def __init__(self, path: Path, offset: int, reserve: int):
        self.path = path
        self.reserve = reserve
        self.hasher = PayloadHasher()
        self.size = 0
        self._fd: int | None = None
        self._validators: Validators | None = None
        if offset:
            fd = self._open()
            self._rehash(fd, offset)
            os.ftruncate(fd, reserve + offset)
            self.size = offset

    def _open(self) -> int:
        try:
            fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        self._fd = fd
        return fd

    def _start(self, fd: int) -> None:
        """An empty file with the room for the tag (an empty ID3 tag) at its front."""
        os.ftruncate(fd, 0)
        if self.reserve:
            os.pwrite(fd, placeholder_tag(self.reserve), 0)
            # Extending by truncate leaves a hole: the padding costs no writes now.
            os.ftruncate(fd, self.reserve)

    def _rehash(self, fd: int, offset: int) -> None:
        position, end = self.reserve, self.reserve + offset
        while position < end:
            chunk = os.pread(fd, min(CHUNK_SIZE, end - position), position)
            if not chunk:
                break
            self.hasher.update(chunk)
            position += len(chunk)

    def head(self, n: int) -> bytes:
        return os.pread(self._fd, n, self.reserve) if self._fd is not None else b""

    def restart(self) -> None:
        if self._fd is not None:
            self._start(self._fd)
        self.hasher = PayloadHasher()
        self.size = 0

    def expect(self, validators: Validators) -> None:
        """What the server said of the body about to be written: saved in the sidecar
        just before the body's first bytes are written (by the same thread), so that
        bytes on disk always have what their resume needs."""
        self._validators = validators

    def write(self, data: bytes | bytearray | memoryview) -> None:
        fd = self._fd
        if fd is None:
            fd = self._open()
            self._start(fd)
        if self._validators is not None:
            save_validators(self.path, self._validators)
            self._validators = None
        view = memoryview(data)
        position = self.reserve + self.size
        while view:
            written = os.pwrite(fd, view, position)
            view = view[written:]
            position += written
        self.hasher.update(data)
        self.size += len(data)

    def digest(self) -> str:
        """The SHA-256 of the audio written so far (the file is not fsynced here: the
        finisher fsyncs it once, tagged, before it enters the archive)."""
        return self.hasher.hexdigest()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_staged(partial: Path) -> BinaryIO:
    """A staged partial file open for reading and writing (refusing a link)."""
    return os.fdopen(open_nofollow(partial, os.O_RDWR), "r+b")


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
