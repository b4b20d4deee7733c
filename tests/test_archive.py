"""Archive layout: sanitising, staying inside the archive, collisions, lock, commit."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.docs import seed_episode

from fetcher.errors import ArchiveError, ArchiveLockedError
from fetcher.store.layout import (
    DEFAULT_TEMPLATE,
    check_template,
    render_path,
    sanitise_component,
    with_suffix_for,
)
from fetcher.store.local import Archive

SEED = seed_episode()


def test_default_layout() -> None:
    assert render_path(DEFAULT_TEMPLATE, SEED) == PurePosixPath(
        "linux-unplugged/0603 - All Your Kernels Belong to Rust.mp3"
    )


def test_a_template_with_formats_and_the_extra_fields() -> None:
    path = render_path("{show_name}/{date:%Y}/{year}-{episode:>05}-{guid_short}.{ext}", SEED)
    assert path == PurePosixPath(
        f"{SEED.show_name}/{SEED.date:%Y}/{SEED.date:%Y}-00603-"
        f"{hashlib.sha1(SEED.guid.encode()).hexdigest()[:8]}.mp3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a/b\\c", "a_b_c"),
        ("..hidden", "hidden"),
        ("What? <Why>: \"now\" | *", "What_ _Why__ _now_ _ _"),
        ("tab\tand\nnewline\x00", "tab_and_newline_"),
        ("trailing dots...", "trailing dots"),
        ("", "_"),
        ("..", "_"),
        ("CON", "_CON"),
    ],
)
def test_sanitise_component(text: str, expected: str) -> None:
    assert sanitise_component(text) == expected


def test_long_names_are_cut_to_255_bytes_keeping_the_extension() -> None:
    name = sanitise_component("é" * 300 + ".mp3", keep_suffix=".mp3")
    assert name.endswith(".mp3") and len(name.encode()) <= 255
    name.encode("utf-8").decode("utf-8")  # never cut inside a character


def test_traversal_in_metadata_stays_inside() -> None:
    hostile = dataclasses.replace(SEED, show_slug="../../etc", title="../../passwd")
    path = render_path(DEFAULT_TEMPLATE, hostile)
    assert ".." not in path.parts and not path.is_absolute()
    assert path == PurePosixPath("_.._etc/0603 - .._.._passwd.mp3")


@settings(max_examples=200)
@given(st.text(), st.text(), st.text(max_size=5))
def test_any_metadata_gives_a_path_inside_the_archive(slug: str, title: str, pad: str) -> None:
    episode = dataclasses.replace(SEED, show_slug=slug, title=title, episode_padded=pad)
    path = render_path(DEFAULT_TEMPLATE, episode)
    assert path.parts and not path.is_absolute()
    for part in path.parts:
        assert part not in ("", ".", "..") and not part.startswith(".")
        assert "/" not in part and "\x00" not in part
        assert len(part.encode("utf-8")) <= 255
    assert path.suffix == ".mp3"
    Archive(Path("/archive")).absolute(path)  # never raises: the path is inside


def test_template_checks() -> None:
    check_template("{show_slug}/{date:%Y}/{title}.mp3")
    with pytest.raises(ValueError, match="unknown field"):
        check_template("{nope}.mp3")
    with pytest.raises(ValueError, match="malformed"):
        check_template("{title")


def test_template_without_extension_gets_mp3() -> None:
    assert render_path("{guid}", SEED).suffix == ".mp3"


def test_collision_suffix_is_deterministic() -> None:
    path = PurePosixPath("show/a.mp3")
    assert with_suffix_for(path, "g1") == with_suffix_for(path, "g1")
    assert with_suffix_for(path, "g1") != with_suffix_for(path, "g2")
    assert with_suffix_for(path, "g1").suffix == ".mp3"


def test_absolute_refuses_escapes(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    for bad in ("../x.mp3", "/etc/passwd", ".fetcher/manifest.sqlite3"):
        with pytest.raises(ArchiveError):
            archive.absolute(bad)


def test_lock_is_exclusive(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a")
    archive.prepare()
    with (
        archive.lock(),
        pytest.raises(ArchiveLockedError, match=f"pid {os.getpid()}"),
        archive.lock(),
    ):
        pass
    with archive.lock():
        pass  # released


def test_commit_refuses_a_planted_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = Archive(tmp_path / "a")
    archive.prepare()
    (archive.root / "show").symlink_to(outside)
    partial = archive.state / "partial" / "x.part"
    partial.write_bytes(b"data")
    with pytest.raises(ArchiveError, match="symbolic link"):
        archive.commit(partial, PurePosixPath("show/ep.mp3"))
    assert list(outside.iterdir()) == []
    assert partial.exists()


def test_commit_moves_the_file(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a")
    archive.prepare()
    partial = archive.state / "partial" / "x.part"
    partial.write_bytes(b"data")
    target = archive.commit(partial, PurePosixPath("show/sub/ep.mp3"))
    assert target.read_bytes() == b"data" and not partial.exists()
