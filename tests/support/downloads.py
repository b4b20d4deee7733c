"""One episode's audio fetched by the real Downloader, for the network tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fetcher.events import Event
from fetcher.net.download import Downloader, DownloadRequest
from fetcher.settings import DownloadSettings
from fetcher.staging import Downloaded
from support.httpserver import TestServer

#: Quick retries and a short timeout: faults are injected, nothing is slow on purpose.
FAST = DownloadSettings(retries=3, backoff=0.01, timeout=2.0)


def fetch(
    server: TestServer,
    path: str,
    partial: Path,
    *,
    expected: int | None = None,
    settings: DownloadSettings = FAST,
    events: list[Event] | None = None,
    url: str | None = None,
) -> Downloaded:
    """Download *path* from *server* into *partial* in a fresh event loop."""
    async def run() -> Downloaded:
        sink = events.append if events is not None else (lambda _: None)
        async with Downloader(settings, on_event=sink) as downloader:
            return await downloader.fetch(
                DownloadRequest("ep", url or server.url(path), partial, expected)
            )

    return asyncio.run(run())


def fetch_in_turn(server: TestServer, paths: list[str], directory: Path,
                  expected: int | None = None, settings: DownloadSettings = FAST) -> None:
    """Download *paths* one after the other with one Downloader (one connection pool)."""
    async def run() -> None:
        async with Downloader(settings) as downloader:
            for index, path in enumerate(paths):
                await downloader.fetch(DownloadRequest(
                    f"ep{index}", server.url(path), directory / f"{index}.part", expected))

    asyncio.run(run())
