"""The one exception hierarchy of fetcher.

::

    FetcherError
    ├── ConfigError            bad TOML or value; names the key          -> exit 2
    ├── SourceError            unreadable or malformed document (path)
    ├── DownloadError          .url (query string redacted)
    │   ├── HTTPStatusError        a status that is not success
    │   ├── RedirectError          too many redirects, or to a non-http(s) scheme
    │   ├── IncompleteDownloadError  the body ended early or the transfer broke
    │   ├── HostUnreachableError   the origin could not be reached earlier in the run
    │   └── ResumeMismatchError    the server answered a Range request wrongly
    ├── VerifyError
    │   ├── SizeMismatchError      received bytes differ from the expected size
    │   └── NotAudioError          the first bytes are not ID3 or an MPEG frame
    ├── TagError               wraps mutagen's errors
    └── ArchiveError
        ├── ArchiveLockedError     another sync holds the lock    -> exit 3
        └── ManifestError          the manifest cannot be opened or is foreign

Foreign exceptions are translated in the one module that calls that library: httpx in
``net/http.py``, mutagen in ``tagging/``, sqlite3 in ``store/manifest.py``, tomllib in
``config.py``. The cause is kept (``raise ... from exc``) except where the foreign
message could carry a URL with a secret; then the cause goes to the debug log. Every
message is one line that names the file or episode and the problem.
"""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@functools.lru_cache(maxsize=1024)
def redact_url(url: str) -> str:
    """Return *url* without its query string, fragment or credentials.

    Private feeds carry tokens in the query string; nothing fetcher prints or logs may
    show them.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def is_url(source: str | Path) -> bool:
    """True for an http(s) URL (a source may also be a local path)."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def shown_source(source: str) -> str:
    """A source as messages and reports show it: a URL redacted, a path as it is."""
    return redact_url(source) if is_url(source) else source


class FetcherError(Exception):
    """Base of every error fetcher raises on purpose."""


class ConfigError(FetcherError):
    """The configuration file or a command-line value is wrong."""

    def __init__(self, message: str, *, key: str | None = None, path: Path | None = None):
        where = ""
        if path is not None:
            where = f"{path}: "
        if key is not None:
            where += f"[{key}] "
        super().__init__(f"{where}{message}")
        self.key = key
        self.path = path


class SourceError(FetcherError):
    """A source (document, feed, OPML; a path or URL) cannot be read or is malformed."""

    def __init__(
        self,
        source: str | Path,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ):
        self.source = shown_source(str(source))
        where = self.source
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")
        self.reason = message
        self.line = line
        self.column = column


class DownloadError(FetcherError):
    """Fetching an episode's audio failed."""

    def __init__(self, message: str, *, url: str, episode: str | None = None,
                 unreachable: str | None = None):
        self.url = redact_url(url)
        self.episode = episode
        self.reason = message
        #: The origin (scheme://host:port) no connection could be made to, when that is
        #: why it failed: failures that share it are one cause.
        self.unreachable = unreachable
        prefix = f"{episode}: " if episode else ""
        super().__init__(f"{prefix}{message} ({self.url})")


class HTTPStatusError(DownloadError):
    def __init__(self, status: int, *, url: str, episode: str | None = None):
        self.status = status
        super().__init__(f"server answered HTTP {status}", url=url, episode=episode)


class HostUnreachableError(DownloadError):
    """The origin could not be reached earlier in this run; not tried again."""


class RedirectError(DownloadError):
    """Too many redirects, or a redirect to a scheme other than http/https."""


class IncompleteDownloadError(DownloadError):
    """The transfer broke off before the whole body arrived."""


# How a body that ended early is described, whichever path read it (fetcher.net.body).
def read_timed_out(received: int) -> str:
    return f"read timed out after {received} bytes"


def connection_broke(received: int, reason: str) -> str:
    return f"connection broke after {received} bytes ({reason})"


def too_slow(count: int, seconds: float) -> str:
    return f"too slow: {count} bytes in {seconds:.0f} s"


class ResumeMismatchError(DownloadError):
    """The server's answer to a Range request does not fit the partial file."""


class VerifyError(FetcherError):
    """A downloaded file is not what the episode document promised."""

    def __init__(self, message: str, *, episode: str | None = None):
        self.episode = episode
        self.reason = message
        prefix = f"{episode}: " if episode else ""
        super().__init__(f"{prefix}{message}")


class SizeMismatchError(VerifyError):
    """The body's size is not the size the document (or the server) promised."""

    def __init__(
        self, expected: int, received: int, *, episode: str | None = None, detail: str = ""
    ):
        self.expected = expected
        self.received = received
        detail = detail or f"received {received}"
        super().__init__(f"size mismatch: expected {expected} bytes, {detail}", episode=episode)


class NotAudioError(VerifyError):
    """The body does not start with an ID3 tag or an MPEG audio frame."""


def is_permanent(error: FetcherError) -> bool:
    """A failure that the same request would meet again (404, 410, not audio, a size
    refused): tried again on a growing schedule, not every run."""
    if isinstance(error, HTTPStatusError):
        return error.status in (400, 401, 403, 404, 405, 410, 451)
    return isinstance(error, NotAudioError | SizeMismatchError | RedirectError)


class TagError(FetcherError):
    """Writing or reading ID3 tags failed."""

    def __init__(self, path: Path, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class ArchiveError(FetcherError):
    """The archive directory or its manifest cannot be used."""


class ArchiveLockedError(ArchiveError):
    """Another fetcher process holds the archive's lock."""


class ManifestError(ArchiveError):
    """The manifest is corrupt, foreign or from a newer fetcher."""
