"""Reading files back with Debian's ffprobe (installed by .ci/run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest


def ffprobe(path: Path) -> dict[str, Any]:
    """``ffprobe -show_chapters -show_format`` as JSON; fails in CI when ffprobe is absent."""
    if shutil.which("ffprobe") is None:
        if os.environ.get("CI"):
            pytest.fail("ffprobe is not installed; .ci/run installs Debian's ffmpeg")
        pytest.skip("ffprobe is not installed (apt-get install ffmpeg)")
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_chapters", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def ffprobe_chapters(path: Path) -> list[tuple[int, int, str]]:
    return [
        (int(c["start"]), int(c["end"]), c.get("tags", {}).get("title", ""))
        for c in ffprobe(path)["chapters"]
    ]
