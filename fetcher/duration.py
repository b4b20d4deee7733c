"""How long MPEG audio plays, from its frames (see :func:`measure_duration_ms`), and the
ways to hand it a file's bytes: mapped, or read as they are sliced."""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterator

from fetcher.audio import ID3V1_SIZE, FrameHeader, id3v2_size, parse_frame_header


def measure_duration_ms(source: str | os.PathLike[str] | Bytes) -> int | None:
    """The audio's real play time in ms, or None when no MPEG frames are found.

    *source* is a path, or the file's bytes (a :func:`mapped` view of it, say). In order
    of cost: the Xing/Info or VBRI frame count when the first frame has one; for
    constant bitrate (the bitrate of frames sampled across the whole file agree) the
    payload size divided by the bitrate; otherwise every frame header is walked, which
    is exact for VBR files without a header.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as file:  # noqa: PTH123 - a path or a file, either
            return _duration_ms(FileBytes(file.fileno()))
    return _duration_ms(source)


class FileBytes:
    """The bytes of an open file, read as they are sliced (a slice is one read): what
    :func:`mapped` gives, for a file that may hold holes."""

    def __init__(self, fd: int):
        self._fd = fd
        self._size = os.fstat(fd).st_size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, where: slice) -> bytes:
        start, stop, _ = where.indices(self._size)
        return os.pread(self._fd, stop - start, start) if stop > start else b""


#: The bytes of a file: in memory, mapped, or read as they are sliced.
Bytes = bytes | bytearray | mmap.mmap | FileBytes


@contextlib.contextmanager
def mapped(fd: int) -> Iterator[Bytes]:
    """The bytes of the open file *fd*, mapped for reading: reading them makes no system
    call, so a thread among many is not held up for the interpreter's lock at each read.
    Only for a file whose bytes were all written, and that does not shrink meanwhile:
    on a full tmpfs, reading a hole through a mapping raises SIGBUS (fetcher maps its
    partial files, whose only hole is the tag's room, which is not read this way)."""
    if os.fstat(fd).st_size == 0:
        yield b""
        return
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as data:
        yield data


def _duration_ms(data: Bytes) -> int | None:
    size = len(data)
    start = id3v2_size(bytes(data[:10])) or 0
    block = bytes(data[start : start + (1 << 16)])
    pos = _find_sync(block)
    if pos is None:
        return None
    first = parse_frame_header(block, pos)
    assert first is not None
    counted = _xing_frames(block[pos : pos + first.length], first)
    if counted is not None:
        return round(counted * first.samples * 1000 / first.sample_rate)
    end = size
    if size - start >= ID3V1_SIZE and data[size - ID3V1_SIZE : size - ID3V1_SIZE + 3] == b"TAG":
        end -= ID3V1_SIZE
    audio_bytes = end - (start + pos)
    if _constant_bitrate(data, start + pos, end, first):
        return round(audio_bytes * 8 / first.bitrate_kbps)
    return _walk_frames(data, start + pos, end)


def _xing_frames(frame: bytes, header: FrameHeader) -> int | None:
    """Frame count from a Xing/Info or VBRI header inside the first frame."""
    if header.version == 1:
        offset = 36 if header.channels == 2 else 21
    else:
        offset = 21 if header.channels == 2 else 13
    tag = frame[offset : offset + 4]
    if tag in (b"Xing", b"Info") and len(frame) >= offset + 12:
        flags = struct.unpack(">I", frame[offset + 4 : offset + 8])[0]
        if flags & 1:
            frames: int = struct.unpack(">I", frame[offset + 8 : offset + 12])[0]
            return frames
    if frame[36:40] == b"VBRI" and len(frame) >= 36 + 18:
        vbri_frames: int = struct.unpack(">I", frame[36 + 14 : 36 + 18])[0]
        return vbri_frames
    return None


#: Positions sampled across a file to decide whether its bitrate is constant: one per
#: 64 KiB of audio, at least :data:`_MIN_SAMPLES` and at most :data:`_SAMPLES`.
_SAMPLES = 48
_MIN_SAMPLES = 12
#: Bytes read at each position: two frames of the largest kind (1,441 bytes) and room
#: to find the first one.
_SAMPLE_BYTES = 4096


def _constant_bitrate(data: Bytes, start: int, end: int, first: FrameHeader) -> bool:
    span = end - start
    if span <= 0:
        return True
    samples = max(_MIN_SAMPLES, min(_SAMPLES, span // (64 * 1024)))
    for index in range(1, samples):
        position = start + span * index // samples
        block = bytes(data[position : min(position + _SAMPLE_BYTES, len(data))])
        found = _find_sync(block)
        if found is None:
            if len(block) < _SAMPLE_BYTES:
                continue  # the tail of the file
            return False
        header = parse_frame_header(block, found)
        if (
            header is None
            or header.bitrate_kbps != first.bitrate_kbps
            or header.sample_rate != first.sample_rate
            or header.layer != first.layer
        ):
            return False
    return True


def _find_sync(data: bytes) -> int | None:
    """The first position where two consecutive frame headers line up."""
    pos = data.find(b"\xff")
    while 0 <= pos < len(data) - 4:
        header = parse_frame_header(data, pos)
        if header is not None and header.length > 0:
            following = parse_frame_header(data, pos + header.length)
            if following is not None or pos + header.length >= len(data) - 4:
                return pos
        pos = data.find(b"\xff", pos + 1)
    return None


def _walk_frames(data: Bytes, start: int, end: int) -> int | None:
    samples_ms = 0.0
    pos = start
    block = b""
    block_start = start
    while pos + 4 <= end:
        rel = pos - block_start
        if rel + 4 > len(block):
            block = bytes(data[pos : min(pos + (1 << 20), end)])
            block_start, rel = pos, 0
            if len(block) < 4:
                break
        header = parse_frame_header(block, rel)
        if header is None or header.length <= 0:
            break
        samples_ms += header.samples * 1000 / header.sample_rate
        pos += header.length
    return round(samples_ms) if samples_ms else None
