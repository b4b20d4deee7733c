"""MPEG audio facts: is this audio, where does the payload start, how long does it play.

Everything here reads bytes; nothing writes. The payload hash covers the bytes after a
leading ID3v2 tag and before a trailing ID3v1 tag, so it stays the same whatever tags
fetcher (or anyone else) writes, and can be computed while the bytes stream in.
"""

from __future__ import annotations

import hashlib
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
