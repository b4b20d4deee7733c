"""fetcher: mirror podcasts into a verified, chapterized archive."""

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
from fetcher.sources import load_episodes

__version__ = "0.1.0"

__all__ = [
    "ArchiveError",
    "ArchiveLockedError",
    "Chapter",
    "ConfigError",
    "DownloadError",
    "Episode",
    "FetcherError",
    "ManifestError",
    "Skipped",
    "SourceError",
    "TagError",
    "VerifyError",
    "__version__",
    "load_episodes",
]
