"""MPEG sniffing, payload hashing and duration measurement on generated audio."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from support.mp3factory import FRAME_MS, id3v1_tag, id3v2_tag, mp3_bytes, text_frame_v23

from fetcher.audio import (
    PayloadHasher,
    describe_head,
    id3v2_size,
    looks_like_audio,
    payload_sha256,
)
from fetcher.duration import measure_duration_ms

AUDIO = mp3_bytes(1_000, seed=5)
TAG = id3v2_tag(text_frame_v23("TIT2", "x"), padding=300)


def test_sniffing() -> None:
    assert looks_like_audio(AUDIO[:16])
    assert looks_like_audio(TAG[:16])
    assert not looks_like_audio(b"<!DOCTYPE html><html>")
    assert not looks_like_audio(b"\x1f\x8b\x08\x00")
    assert not looks_like_audio(b"")
    assert not looks_like_audio(b"ID3\x09\x00\x00\x00\x00\x00\x00")  # no such version
    assert describe_head(b"<html><body>") == "an HTML page"
    assert describe_head(b"\x1f\x8b\x08") == "gzip data"


def test_id3v2_size_includes_header() -> None:
    assert id3v2_size(TAG) == len(TAG)
    assert id3v2_size(AUDIO) is None


@settings(max_examples=50)
@given(st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=30),
       st.booleans(), st.booleans())
def test_payload_hash_is_independent_of_chunking(
    cuts: list[int], with_v2: bool, with_v1: bool
) -> None:
    data = (TAG if with_v2 else b"") + AUDIO + (id3v1_tag() if with_v1 else b"")
    hasher = PayloadHasher()
    position = 0
    for cut in cuts:
        hasher.update(data[position : position + cut])
        position += cut
    hasher.update(data[position:])
    assert hasher.hexdigest() == hashlib.sha256(AUDIO).hexdigest()


def test_tiny_inputs() -> None:
    hasher = PayloadHasher()
    hasher.update(b"abc")
    assert hasher.hexdigest() == hashlib.sha256(b"abc").hexdigest()


def test_payload_sha256_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a.mp3"
    path.write_bytes(TAG + AUDIO + id3v1_tag())
    assert payload_sha256(path) == hashlib.sha256(AUDIO).hexdigest()


def test_duration_by_frame_walk_and_by_xing(tmp_path: Path) -> None:
    plain = tmp_path / "plain.mp3"
    plain.write_bytes(TAG + mp3_bytes(10_000) + id3v1_tag())
    assert measure_duration_ms(plain) == 10_000 // FRAME_MS * FRAME_MS
    xing = tmp_path / "xing.mp3"
    xing.write_bytes(mp3_bytes(6_000, xing=True))
    assert measure_duration_ms(xing) == 6_000


def test_no_audio_has_no_duration(tmp_path: Path) -> None:
    path = tmp_path / "not.mp3"
    path.write_bytes(b"<html></html>" * 100)
    assert measure_duration_ms(path) is None


def _vbr(tmp_path: Path) -> Path:
    """Frames alternating 128 and 64 kbit/s at 48 kHz: VBR with no Xing header."""
    low = bytearray(mp3_bytes(24)[:384])
    low[2] = 0x54  # bitrate index 5 (64 kbit/s), 48 kHz
    low_frame = bytes(low[:192])
    high_frame = mp3_bytes(24, seed=9)[:384]
    path = tmp_path / "vbr.mp3"
    path.write_bytes((high_frame + low_frame) * 500 + high_frame * 100)
    return path


def test_vbr_without_header_is_walked_frame_by_frame(tmp_path: Path) -> None:
    path = _vbr(tmp_path)
    assert measure_duration_ms(path) == (1000 + 100) * FRAME_MS


def test_a_stretch_at_another_bitrate_is_not_taken_for_cbr(tmp_path: Path) -> None:
    # A stitched-in segment (an inserted ad, say) at another bitrate: a fifth of the
    # file in its middle is enough for the sampling to see it and walk every frame.
    low = bytearray(mp3_bytes(24)[:384])
    low[2] = 0x54  # 64 kbit/s, 48 kHz
    low_frame, high_frame = bytes(low[:192]), mp3_bytes(24, seed=9)[:384]
    path = tmp_path / "stitched.mp3"
    path.write_bytes(high_frame * 2000 + low_frame * 1000 + high_frame * 2000)
    assert measure_duration_ms(path) == 5000 * FRAME_MS


def test_cbr_duration_by_size_matches_the_frame_walk(tmp_path: Path) -> None:
    path = tmp_path / "cbr.mp3"
    path.write_bytes(TAG + mp3_bytes(123_456, seed=2) + id3v1_tag())
    assert measure_duration_ms(path) == 123_456 // FRAME_MS * FRAME_MS
