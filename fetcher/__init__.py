"""fetcher: mirror podcasts into a verified, chapterized archive.

The public API: :func:`sync` (or :func:`run` inside an event loop) brings an archive
up to date; :func:`load_episodes` / :func:`read_sources` read sources;
:func:`build_plan` decides what each episode needs; :func:`verify_archive` audits an
archive. Everything they take and return is exported here too.
"""

from fetcher._version import __version__
from fetcher.config import (
    ArchiveConfig,
    Config,
    HooksConfig,
    SourceConfig,
    SourcesConfig,
    load_config,
)
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
from fetcher.events import (
    Advanced,
    EpisodeDone,
    Event,
    EventSink,
    Failed,
    Finished,
    Outcome,
    PlanReady,
    Restarted,
    Retrying,
    Started,
    Status,
)
from fetcher.filters import Filters, make_filters
from fetcher.model import (
    Chapter,
    Episode,
    FeedRecord,
    ItemKey,
    Person,
    Settled,
    Skipped,
    Transcript,
)
from fetcher.plan import Action, PathOwners, Plan, Step, build_plan
from fetcher.settings import DownloadSettings, FeedSettings, TagSettings
from fetcher.sources import (
    Entry,
    Loaded,
    ReadOptions,
    SourceReport,
    load_episodes,
    read_sources,
)
from fetcher.store import Archive, Store
from fetcher.store.manifest import Record
from fetcher.sync import SyncReport, run, sync
from fetcher.verify import Problem, verify_archive

__all__ = [
    "Action",
    "Advanced",
    "Archive",
    "ArchiveConfig",
    "ArchiveError",
    "ArchiveLockedError",
    "Chapter",
    "Config",
    "ConfigError",
    "DownloadError",
    "DownloadSettings",
    "Entry",
    "Episode",
    "EpisodeDone",
    "Event",
    "EventSink",
    "Failed",
    "FeedRecord",
    "FeedSettings",
    "FetcherError",
    "Filters",
    "Finished",
    "HooksConfig",
    "ItemKey",
    "Loaded",
    "ManifestError",
    "Outcome",
    "PathOwners",
    "Person",
    "Plan",
    "PlanReady",
    "Problem",
    "ReadOptions",
    "Record",
    "Restarted",
    "Retrying",
    "Settled",
    "Skipped",
    "SourceConfig",
    "SourceError",
    "SourceReport",
    "SourcesConfig",
    "Started",
    "Status",
    "Step",
    "Store",
    "SyncReport",
    "TagError",
    "TagSettings",
    "Transcript",
    "VerifyError",
    "__version__",
    "build_plan",
    "load_config",
    "load_episodes",
    "make_filters",
    "read_sources",
    "run",
    "sync",
    "verify_archive",
]
