"""fetcher: mirror podcasts into a verified, chapterized archive."""

from fetcher._version import __version__
from fetcher.config import Config, load_config
from fetcher.errors import (
    ArchiveError,
    ArchiveLockedError,
    ConfigError,
    DownloadError,
    FetcherError,
    ManifestError,
    SourceError,
    TagError,
    VerifyError,
)
from fetcher.model import Chapter, Episode, Skipped
from fetcher.plan import Action, Plan, build_plan
from fetcher.sources import load_episodes
from fetcher.sync import Outcome, Status, SyncReport, sync
from fetcher.verify import verify_archive

__all__ = [
    "Action",
    "ArchiveError",
    "ArchiveLockedError",
    "Chapter",
    "Config",
    "ConfigError",
    "DownloadError",
    "Episode",
    "FetcherError",
    "ManifestError",
    "Outcome",
    "Plan",
    "Skipped",
    "SourceError",
    "Status",
    "SyncReport",
    "TagError",
    "VerifyError",
    "__version__",
    "build_plan",
    "load_config",
    "load_episodes",
    "sync",
    "verify_archive",
]
