"""Every event the library reports while it works, and the outcome of each episode.

The UI (``progress.py``) renders these; library code only emits them through an
:data:`EventSink`. Nothing here imports a network or tagging library.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fetcher.model import Episode

# --- download progress ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    key: str
    url: str
    offset: int
    total: int | None


@dataclass(frozen=True, slots=True)
class Advanced:
    key: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Restarted:
    """Bytes already counted were thrown away (the server did not honour the range)."""

    key: str
    discarded: int


@dataclass(frozen=True, slots=True)
class Retrying:
    key: str
    attempt: int
    wait: float
    reason: str


@dataclass(frozen=True, slots=True)
class Finished:
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class Failed:
    key: str
    reason: str


DownloadEvent = Started | Advanced | Restarted | Retrying | Finished | Failed


# --- episode outcomes --------------------------------------------------------------


class Status(enum.Enum):
    DOWNLOADED = "downloaded"
    RETAGGED = "retagged"
    UP_TO_DATE = "up_to_date"
    SKIPPED = "skipped"
    #: Failed for good earlier (404, not audio): tried again on a growing schedule.
    DEFERRED = "deferred"
    FAILED = "failed"
    #: Stopped by SIGINT/SIGTERM; resumes on the next run.
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    source: str | None
    episode: Episode | None = None
    path: Path | None = None
    bytes: int | None = None
    error: str | None = None
    reason: str | None = None
    #: Archive-relative paths of the transcripts beside the audio.
    transcripts: tuple[str, ...] = ()
    #: When a deferred episode is tried again (ISO 8601).
    next_try: str | None = None
    #: What failures with one cause share (``unreachable http://host:80``), to report
    #: them once with a count.
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class EpisodeDone:
    """One episode's pipeline ended."""

    key: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class PlanReady:
    """The work is known before any download starts: episodes and bytes to fetch
    (``unknown_sizes`` of them have no size yet)."""

    episodes: int
    bytes: int
    unknown_sizes: int = 0


Event = DownloadEvent | EpisodeDone | PlanReady
EventSink = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The default sink: report nothing."""
    return None
