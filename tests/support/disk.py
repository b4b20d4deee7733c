"""A real, small filesystem that fills up: tmpfs mounted by the tests (they run as root
in CI). Outside CI, where mounting is not allowed, the tests that need it are skipped."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(where: Path, size_kb: int) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                             str(where)], capture_output=True, text=True)
    if result.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {result.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Fill *disk* to the last byte; returns the filler (delete it to free space)."""
    filler = disk / "filler"
    with filler.open("wb") as file:
        chunk = bytes(64 * 1024)
        with contextlib.suppress(OSError):
            while True:
                file.write(chunk)
                file.flush()
    with contextlib.suppress(OSError), filler.open("ab") as file:
        while True:
            file.write(b"\0")
            file.flush()
    return filler
