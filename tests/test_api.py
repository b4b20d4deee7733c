"""The public API is what ``fetcher.__all__`` says, and nothing leaks in by accident."""

import fetcher


def test_public_api_is_pinned() -> None:
    assert sorted(fetcher.__all__) == sorted(
        [
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
    )
    for name in fetcher.__all__:
        assert hasattr(fetcher, name)


def test_errors_share_one_root() -> None:
    for name in fetcher.__all__:
        obj = getattr(fetcher, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, fetcher.FetcherError)
