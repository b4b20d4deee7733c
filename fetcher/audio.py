"""MPEG audio facts: is this audio, where does the payload start, how long does it play.

Everything here reads bytes; nothing writes. The payload hash covers the bytes after a
leading ID3v2 tag and before a trailing ID3v1 tag, so it stays the same whatever tags
fetcher (or anyone else) writes, and can be computed while the bytes stream in.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ID3V1_SIZE = 128

# MPEG audio frame header tables (ISO 11172-3 / 13818-3), kbit/s by version and layer.
_BITRATES = {
    (1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {1: (44100, 48000, 32000), 2: (22050, 24000, 16000), 25: (11025, 12000, 8000)}


def id3v2_size(header: bytes) -> int | None:
    """Total size of the ID3v2 tag that *header* (>= 10 bytes) starts, or None."""
    if len(header) < 10 or header[:3] != b"ID3":
        return None
    major, _revision, flags = header[3], header[4], header[5]
    if major not in (2, 3, 4) or any(b & 0x80 for b in header[6:10]):
        return None
    size = (header[6] << 21) | (header[7] << 14) | (header[8] << 7) | header[9]
    footer = 10 if major == 4 and flags & 0x10 else 0
    return 10 + size + footer


def id3v2_header(total: int, version: int = 3) -> bytes:
    """The 10-byte header of an ID3v2 tag *total* bytes long, header included."""
    body = total - 10
    syncsafe = bytes([(body >> 21) & 0x7F, (body >> 14) & 0x7F, (body >> 7) & 0x7F, body & 0x7F])
    return b"ID3" + bytes([version, 0, 0]) + syncsafe


@dataclass(frozen=True, slots=True)
class FrameHeader:
    version: int  # 1, 2 or 25 (MPEG 2.5)
    layer: int
    bitrate_kbps: int
    sample_rate: int
    padding: int
    channels: int

    @property
    def samples(self) -> int:
        if self.layer == 1:
            return 384
        if self.layer == 3 and self.version != 1:
            return 576
        return 1152

    @property
    def length(self) -> int:
        if self.layer == 1:
            return (12 * self.bitrate_kbps * 1000 // self.sample_rate + self.padding) * 4
        slot = self.samples // 8
        return slot * self.bitrate_kbps * 1000 // self.sample_rate + self.padding


def parse_frame_header(data: bytes | memoryview, pos: int = 0) -> FrameHeader | None:
    """The MPEG audio frame header at *pos*, or None when there is none."""
    if pos + 4 > len(data):
        return None
    b0, b1, b2, b3 = data[pos], data[pos + 1], data[pos + 2], data[pos + 3]
    if b0 != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version = {0: 25, 2: 2, 3: 1}.get((b1 >> 3) & 3)
    layer = {1: 3, 2: 2, 3: 1}.get((b1 >> 1) & 3)
    bitrate_index = b2 >> 4
    rate_index = (b2 >> 2) & 3
    if version is None or layer is None or bitrate_index in (0, 15) or rate_index == 3:
        return None
    table = _BITRATES[(1 if version == 1 else 2, layer)]
    return FrameHeader(
        version=version,
        layer=layer,
        bitrate_kbps=table[bitrate_index],
        sample_rate=_SAMPLE_RATES[version][rate_index],
        padding=(b2 >> 1) & 1,
        channels=1 if (b3 >> 6) == 3 else 2,
    )


def looks_like_audio(head: bytes) -> bool:
    """True when *head* starts like an audio file fetcher archives (see audio_kind)."""
    return audio_kind(head) is not None


#: File name endings by audio kind.
EXTENSIONS = {"mp3": "mp3", "mp4": "m4a", "ogg": "ogg", "opus": "opus", "flac": "flac",
              "wav": "wav", "aac": "aac"}


def audio_kind(head: bytes) -> str | None:
    """``mp3`` (an ID3v2 tag or an MPEG audio frame), ``mp4`` (an ISO media file: M4A,
    AAC in MP4), ``ogg`` / ``opus`` (an Ogg stream), ``flac``, ``wav``, ``aac`` (ADTS),
    or None."""
    if id3v2_size(head) is not None or parse_frame_header(head) is not None:
        return "mp3"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"OggS"):
        return "opus" if b"OpusHead" in head else "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "aac"
    return None


def kind_for(media_type: str | None, url: str) -> str:
    """The audio kind a download is expected to be, from its type or URL (MP3 when
    nothing says otherwise); the first bytes decide in the end."""
    media_type = (media_type or "").lower()
    path = url.split("?", 1)[0].lower()
    if "mp4" in media_type or "m4a" in media_type or "aac" in media_type \
            or path.endswith((".m4a", ".mp4", ".aac", ".m4b")):
        return "mp4"
    if "opus" in media_type or path.endswith(".opus"):
        return "opus"
    if "ogg" in media_type or path.endswith((".ogg", ".oga")):
        return "ogg"
    if "flac" in media_type or path.endswith(".flac"):
        return "flac"
    if "wav" in media_type or path.endswith(".wav"):
        return "wav"
    return "mp3"


def describe_head(head: bytes) -> str:
    """A few words on what the first bytes are instead, for an error message."""
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if stripped.startswith((b"<?xml", b"<")):
        return "an XML/HTML document"
    if head.startswith(b"\x1f\x8b"):
        return "gzip data"
    if stripped.startswith((b"{", b"[")):
        return "JSON"
    if not head:
        return "empty"
    return f"bytes {head[:8].hex(' ')}"


class PayloadHasher:
    """SHA-256 of the audio payload, fed in stream order.

    Bytes of a leading ID3v2 tag are skipped; the last 128 bytes are held back until
    :meth:`hexdigest` so that a trailing ID3v1 tag (``TAG``) can be left out.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._head = bytearray()
        self._skip: int | None = None
        self._position = 0
        self._tail = b""

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if self._skip is None:
            need = 10 - len(self._head)
            self._head += view[:need]
            view = view[need:]
            if len(self._head) < 10:
                return
            self._skip = id3v2_size(bytes(self._head)) or 0
            buffered, self._head = bytes(self._head), bytearray()
            self._position = 0
            self._feed(memoryview(buffered))
        self._feed(view)

    def _feed(self, view: memoryview) -> None:
        assert self._skip is not None
        if self._position < self._skip:
            drop = min(self._skip - self._position, len(view))
            self._position += drop
            view = view[drop:]
        if not view:
            return
        self._position += len(view)
        if len(view) >= ID3V1_SIZE:
            self._sha.update(self._tail)
            self._sha.update(view[:-ID3V1_SIZE])
            self._tail = bytes(view[-ID3V1_SIZE:])
        else:
            combined = self._tail + bytes(view)
            self._sha.update(combined[:-ID3V1_SIZE])
            self._tail = combined[-ID3V1_SIZE:]

    def hexdigest(self) -> str:
        sha = self._sha.copy()
        if self._skip is None:
            # Fewer than 10 bytes in all: there is no tag to skip.
            sha.update(self._head)
            return sha.hexdigest()
        if not (len(self._tail) == ID3V1_SIZE and self._tail.startswith(b"TAG")):
            sha.update(self._tail)
        return sha.hexdigest()


def payload_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """The payload hash of a whole file (see :class:`PayloadHasher`)."""
    hasher = PayloadHasher()
    with path.open("rb") as file:
        while chunk := file.read(chunk_size):
            hasher.update(chunk)
    return hasher.hexdigest()


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of every byte of *path* (audio that is not MP3 is hashed whole)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def tag_sha256(path: Path) -> str:
    """SHA-256 of the ID3v2 tag at the start of *path* (of nothing when there is none).

    With :func:`payload_sha256` it covers every byte of a tagged file: the tag, then the
    audio payload (fetcher removes ID3v1 tags, and a changed length shows in the size).
    """
    with path.open("rb") as file:
        size = id3v2_size(file.read(10)) or 0
        file.seek(0)
        return hashlib.sha256(file.read(size)).hexdigest()


def file_digests(path: Path, chunk_size: int = 1 << 20) -> tuple[str, str]:
    """(tag SHA-256, payload SHA-256) of *path* in one read."""
    return tag_sha256(path), payload_sha256(path, chunk_size)


def measure_duration_ms(source: str | os.PathLike[str] | Bytes) -> int | None:
    """The audio's real play time in ms, or None when no MPEG frames are found.

    *source* is a path, or the file's bytes (a :func:`mapped` view of it, say). In order
    of cost: the Xing/Info or VBRI frame count when the first frame has one; for
    constant bitrate (the bitrate of frames sampled across the whole file agree) the
    payload size divided by the bitrate; otherwise every frame header is walked, which
    is exact for VBR files without a header.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as file, mapped(file.fileno()) as data:  # noqa: PTH123
            return _duration_ms(data)
    return _duration_ms(source)


#: The bytes of a file: in memory, or mapped (reading a mapped file releases no lock:
#: a thread among many that read what it needs this way is not held up at every read).
Bytes = bytes | bytearray | mmap.mmap


@contextlib.contextmanager
def mapped(fd: int) -> Iterator[Bytes]:
    """The bytes of the open file *fd*, mapped for reading (empty for an empty file).
    The file must not shrink while they are read."""
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
    while pos + 4 <= end:
        header = parse_frame_header(bytes(data[pos : pos + 4]))
        if header is None or header.length <= 0:
            break
        samples_ms += header.samples * 1000 / header.sample_rate
        pos += header.length
    return round(samples_ms) if samples_ms else None
