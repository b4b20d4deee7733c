"""Small, valid MP3 files made by the tests themselves.

Frames are MPEG-1 Layer III, 48 kHz, 128 kbit/s, mono: 384 bytes and exactly 24 ms each,
so durations are exact. Side information is zero (every granule is silent) and the rest
of each frame carries pseudo-random ancillary bytes, so files differ by seed and decoders
(ffmpeg included) play them as silence.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

FRAME_BYTES = 384
FRAME_MS = 24
_HEADER = bytes([0xFF, 0xFB, 0x94, 0xC0])  # MPEG-1 L3, no CRC, 128k, 48 kHz, mono
_SIDE_INFO = 17


def frames_for_ms(duration_ms: int) -> int:
    return max(1, duration_ms // FRAME_MS)


def mp3_bytes(duration_ms: int = 2_000, *, seed: int = 0, xing: bool = False,
              declared_ms: int | None = None) -> bytes:
    """Raw MPEG audio (no tags) that plays for *duration_ms* (rounded down to frames).

    With *declared_ms*, a Xing header declares that play time instead: a small file
    that players and ffprobe take for a long one (for chapters far into an episode).
    """
    rng = random.Random(seed)
    count = frames_for_ms(duration_ms)
    xing = xing or declared_ms is not None
    body_size = FRAME_BYTES - len(_HEADER) - _SIDE_INFO
    frames = []
    if xing:
        info = bytearray(FRAME_BYTES)
        info[:4] = _HEADER
        offset = 4 + _SIDE_INFO
        info[offset : offset + 4] = b"Xing"
        info[offset + 4 : offset + 8] = struct.pack(">I", 1)
        declared = frames_for_ms(declared_ms) if declared_ms is not None else count
        info[offset + 8 : offset + 12] = struct.pack(">I", declared)
        frames.append(bytes(info))
    pool = [_HEADER + bytes(_SIDE_INFO) + rng.randbytes(body_size) for _ in range(min(count, 64))]
    frames.extend(pool[index % len(pool)] for index in range(count))
    return b"".join(frames)


def id3v2_tag(frames: bytes = b"", padding: int = 0, version: int = 3) -> bytes:
    """An ID3v2 tag around already-encoded *frames*."""
    size = len(frames) + padding
    syncsafe = bytes(
        [(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F]
    )
    return b"ID3" + bytes([version, 0, 0]) + syncsafe + frames + bytes(padding)


def text_frame_v23(frame_id: str, text: str) -> bytes:
    payload = b"\x00" + text.encode("latin-1")
    return frame_id.encode() + struct.pack(">I", len(payload)) + b"\x00\x00" + payload


def id3v1_tag(title: str = "old") -> bytes:
    return b"TAG" + title.encode("latin-1").ljust(30, b"\x00") + bytes(128 - 33)


def write_mp3(path: Path, duration_ms: int = 2_000, *, seed: int = 0, prefix: bytes = b"",
              suffix: bytes = b"") -> Path:
    path.write_bytes(prefix + mp3_bytes(duration_ms, seed=seed) + suffix)
    return path
