"""The download stage, the only code that talks HTTP.

:class:`Downloader` fetches one episode's audio into a partial file and hands back a
:class:`Downloaded` that is proven whole (size and MPEG sniff) or raises a typed
:class:`~fetcher.errors.DownloadError` / :class:`~fetcher.errors.VerifyError`.

- one ``httpx.AsyncClient`` for the run, a global and a per-host limit;
- redirects followed by hand: at most ``max_redirects``, only to http/https;
- the body streamed in large chunks (``Accept-Encoding: identity``), written and hashed
  off the event loop, never held in memory;
- resume with ``Range`` + ``If-Range`` from a partial file, within a run and across
  runs: the validators live in a small JSON sidecar beside the partial file;
- tenacity retries only transient failures, honouring ``Retry-After``; every retry
  resumes;
- progress is reported as events to a callback; no UI here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import json
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from fetcher.audio import PayloadHasher, describe_head, id3v2_header, looks_like_audio
from fetcher.errors import (
    DownloadError,
    FetcherError,
    HTTPStatusError,
    IncompleteDownloadError,
    NotAudioError,
    RedirectError,
    ResumeMismatchError,
    SizeMismatchError,
    redact_url,
)
from fetcher.failpoints import failpoint
from fetcher.settings import DownloadSettings as DownloadSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_SIZE = 1 << 20
#: Response headers larger than this are a flood, not a podcast host.
MAX_HEADER_BYTES = 64 * 1024
#: Never wait longer than this for one ``Retry-After``.
MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True, slots=True)
class DownloadRequest:
    key: str
    """Names the episode in events and errors."""
    url: str
    partial: Path
    expected_bytes: int | None = None
    #: Bytes kept free at the start of the partial file for the final tag.
    reserve: int = 0


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A partial file whose bytes are complete and look like audio."""

    path: Path
    size: int
    audio_sha256: str
    etag: str | None
    last_modified: str | None
    expected_bytes: int | None
    resumed_from: int
    #: The room left at the start of ``path`` (an empty ID3 tag) before the body.
    reserve: int = 0
    #: Set when ``size_mismatch = "accept"`` let a size other than the document's pass.
    size_discrepancy: bool = False
    url: str = ""


# --- progress events ---------------------------------------------------------------


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


Event = Started | Advanced | Restarted | Retrying | Finished | Failed
EventSink = Callable[[Event], None]


def _ignore(_: Event) -> None:
    return None


# --- the partial file and its sidecar ----------------------------------------------


def sidecar_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


@dataclass(slots=True)
class _Validators:
    """What the server said about the body the partial file holds the start of."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None
    reserve: int = 0

    def if_range(self) -> str | None:
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


def _load_validators(partial: Path, url: str) -> _Validators | None:
    try:
        data = json.loads(sidecar_path(partial).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("url") != url:
        return None
    etag, modified = data.get("etag"), data.get("last_modified")
    return _Validators(
        url,
        etag if isinstance(etag, str) else None,
        modified if isinstance(modified, str) else None,
        _whole(data.get("total")),
        _whole(data.get("reserve")) or 0,
    )


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _save_validators(partial: Path, validators: _Validators) -> None:
    target = sidecar_path(partial)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(
        json.dumps(
            {
                "url": validators.url,
                "etag": validators.etag,
                "last_modified": validators.last_modified,
                "total": validators.total,
                "reserve": validators.reserve,
            }
        ),
        encoding="utf-8",
    )
    temporary.replace(target)


def mark_verified(result: Downloaded) -> None:
    """Record in the sidecar that the partial file is complete and verified.

    From then on the file's length changes as it is tagged, so byte offsets mean
    nothing; a run that stops before the commit finishes the episode from this record
    next time instead of downloading it again.
    """
    target = sidecar_path(result.path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps({"verified": dataclasses.asdict(result)}, default=str),
                         encoding="utf-8")
    temporary.replace(target)


def verified_download(partial: Path, url: str) -> Downloaded | None:
    """What :func:`mark_verified` recorded for *partial* and *url*, if anything (the
    partial file itself may already have been renamed into the archive)."""
    try:
        data = json.loads(sidecar_path(partial).read_text(encoding="utf-8"))
        info = data["verified"]
        if info["url"] != url:
            return None
        return Downloaded(
            path=partial,
            size=int(info["size"]),
            audio_sha256=str(info["audio_sha256"]),
            etag=info["etag"],
            last_modified=info["last_modified"],
            expected_bytes=info["expected_bytes"],
            resumed_from=int(info["size"]),
            reserve=int(info["reserve"]),
            size_discrepancy=bool(info["size_discrepancy"]),
            url=url,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _load_verified(partial: Path, url: str) -> Downloaded | None:
    return verified_download(partial, url) if partial.exists() else None


def discard_partial(partial: Path) -> None:
    """Remove a partial file and its sidecar (both may be absent)."""
    for path in (partial, sidecar_path(partial)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def placeholder_tag(size: int) -> bytes:
    """The header of an empty ID3v2.3 tag *size* bytes long (the rest is padding)."""
    return id3v2_header(size)


class _Sink:
    """The open partial file, hashed as it grows. Its methods block: run them in a thread.

    With a *reserve*, the file starts with an empty ID3 tag of that many bytes and the
    body follows it: the tagger later writes the real tag into that room, so the audio
    is written exactly once. ``size`` counts body bytes only.
    """

    def __init__(self, path: Path, offset: int, reserve: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.file = os.fdopen(fd, "r+b", buffering=0)
        self.reserve = reserve
        self.hasher = PayloadHasher()
        self.size = 0
        if offset:
            self._rehash(offset)
        else:
            self._start()
        self.file.truncate(reserve + offset)
        self.file.seek(reserve + offset)
        self.size = offset

    def _start(self) -> None:
        self.file.seek(0)
        self.file.truncate(0)
        if self.reserve:
            self.file.write(placeholder_tag(self.reserve))
            # Extending by truncate leaves a hole: the padding costs no writes now.
            self.file.truncate(self.reserve)

    def _rehash(self, offset: int) -> None:
        self.file.seek(self.reserve)
        remaining = offset
        while remaining:
            chunk = self.file.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            self.hasher.update(chunk)
            remaining -= len(chunk)

    def head(self, n: int) -> bytes:
        position = self.file.tell()
        self.file.seek(self.reserve)
        data = self.file.read(n)
        self.file.seek(position)
        return data

    def restart(self) -> None:
        self._start()
        self.file.seek(self.reserve)
        self.hasher = PayloadHasher()
        self.size = 0

    def write(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            written = self.file.write(view)
            if written is None:
                raise BlockingIOError("write would block")
            view = view[written:]
        self.hasher.update(data)
        self.size += len(data)

    def finish(self) -> str:
        os.fsync(self.file.fileno())
        return self.hasher.hexdigest()

    def close(self) -> None:
        self.file.close()


# --- the downloader ------------------------------------------------------------------


class _Transient(Exception):
    """Marks an error as worth another attempt; carries the typed error out."""

    def __init__(
        self, error: DownloadError, retry_after: float | None = None, *, no_connection: bool = False
    ):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        #: No connection could be made at all (DNS, refused, connect timeout).
        self.no_connection = no_connection


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)


class Downloader:
    """Fetches episodes' audio; use as ``async with Downloader(settings) as d``."""

    def __init__(
        self,
        settings: DownloadSettings,
        *,
        on_event: EventSink = _ignore,
        client: httpx.AsyncClient | None = None,
    ):
        self.settings = settings
        self.on_event = on_event
        self._client = client
        self._own_client = client is None
        self._jobs = asyncio.Semaphore(settings.jobs)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        # Hosts that could not be reached at all after every retry: the rest of the run
        # fails their episodes at once instead of waiting through the same retries.
        self._unreachable: dict[str, str] = {}

    async def __aenter__(self) -> Downloader:
        _larger_socket_reads()
        if self._client is None:
            timeout = self.settings.timeout
            self._client = httpx.AsyncClient(
                http1=True,
                http2=False,
                follow_redirects=False,
                timeout=httpx.Timeout(timeout, connect=timeout, read=timeout, pool=None),
                limits=httpx.Limits(
                    max_connections=self.settings.jobs * 2,
                    max_keepalive_connections=self.settings.jobs * 2,
                ),
                headers={
                    "User-Agent": self.settings.user_agent,
                    "Accept-Encoding": "identity",
                    "Accept": "audio/mpeg, audio/*;q=0.9, */*;q=0.1",
                },
                trust_env=False,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _host_limit(self, url: str) -> asyncio.Semaphore:
        host = _host(url)
        if host not in self._hosts:
            self._hosts[host] = asyncio.Semaphore(self.settings.per_host)
        return self._hosts[host]

    async def fetch(self, request: DownloadRequest) -> Downloaded:
        """Download *request* into its partial file; raises a FetcherError on failure."""
        try:
            async with self._jobs, self._host_limit(request.url):
                result = await self._with_retries(request)
        except FetcherError as error:
            self.on_event(Failed(request.key, str(error)))
            raise
        self.on_event(Finished(request.key, result.size))
        return result

    async def _with_retries(self, request: DownloadRequest) -> Downloaded:
        return await self._retried(request.key, request.url, lambda: self._attempt(request))

    async def _retried(self, key: str, url: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run *attempt* under the retry policy; unwrap the typed error at the end.

        A host that could not be reached at all after every retry fails the rest of the
        run's requests to it at once instead of waiting through the same retries.
        """
        host = _host(url)
        if host in self._unreachable:
            raise DownloadError(
                f"host unreachable earlier in this run ({self._unreachable[host]})",
                url=url, episode=key,
            )
        try:
            async for try_ in self._retrying(key):
                with try_:
                    return await attempt()
        except _Transient as transient:
            if transient.no_connection:
                self._unreachable[host] = transient.error.reason
            raise transient.error from None
        raise AssertionError("tenacity ended without a result")  # pragma: no cover

    def _retrying(self, key: str) -> AsyncRetrying:
        """Transient failures only, backoff with jitter or Retry-After, announced."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Transient)),
            before_sleep=lambda state: self._announce_retry(key, state),
            sleep=asyncio.sleep,
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            return min(error.retry_after, MAX_RETRY_AFTER)
        base = self.settings.backoff * 2.0 ** (state.attempt_number - 1)
        return min(base, 60.0) * random.uniform(0.5, 1.5)

    def _announce_retry(self, key: str, state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        reason = str(error.error.reason) if isinstance(error, _Transient) else str(error)
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.info("%s: %s; retry %d in %.1fs", key, reason, state.attempt_number, wait)
        self.on_event(Retrying(key, state.attempt_number, wait, reason))

    # One attempt: request (following redirects), check the answer, stream the body.

    async def _attempt(self, request: DownloadRequest) -> Downloaded:
        partial = request.partial
        finished = _load_verified(partial, request.url)
        if finished is not None:
            log.info("%s: finishing a download verified in an earlier run", request.key)
            return finished
        validators = _load_validators(partial, request.url)
        reserve = validators.reserve if validators is not None else request.reserve
        offset = max(partial.stat().st_size - reserve, 0) if partial.exists() else 0
        if offset and (validators is None or validators.if_range() is None):
            log.debug("%s: partial file has no validator; starting over", request.key)
            offset, validators, reserve = 0, None, request.reserve
        if validators is not None and validators.total is not None and offset > validators.total:
            offset, validators, reserve = 0, None, request.reserve

        sink = await asyncio.to_thread(_Sink, partial, offset, reserve)
        try:
            try:
                return await self._transfer(request, sink, validators)
            finally:
                sink.close()
        except FetcherError:
            # Bytes that failed verification are not worth resuming.
            discard_partial(partial)
            raise

    async def _transfer(
        self, request: DownloadRequest, sink: _Sink, validators: _Validators | None
    ) -> Downloaded:
        offset = sink.size
        if validators is not None and offset and offset == validators.total:
            # An earlier attempt received every byte but stopped before committing.
            self.on_event(Started(request.key, redact_url(request.url), offset, offset))
            return await self._complete(request, sink, offset, validators)

        headers: dict[str, str] = {}
        if offset and validators is not None:
            if_range = validators.if_range()
            assert if_range is not None
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = if_range

        response = await self._get(request.key, request.url, headers)
        try:
            total = await self._check_answer(request, response, sink, offset)
            offset = sink.size
            if response.status_code == 416:
                assert validators is not None
                self.on_event(Started(request.key, redact_url(request.url), offset, total))
                return await self._complete(request, sink, offset, validators)
            validators = _Validators(
                request.url,
                response.headers.get("ETag"),
                response.headers.get("Last-Modified"),
                total,
                sink.reserve,
            )
            await asyncio.to_thread(_save_validators, request.partial, validators)
            limit, mismatch = self._size_limit(request, total)
            self.on_event(Started(request.key, redact_url(request.url), offset, total))
            await self._stream(request, response, sink, limit, mismatch)
        finally:
            await response.aclose()
        return await self._complete(request, sink, offset, validators)

    async def _check_answer(
        self, request: DownloadRequest, response: httpx.Response, sink: _Sink, offset: int
    ) -> int | None:
        """Decide what the status means for the partial file; returns the body's total."""
        status = response.status_code
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or not offset or int(match.group(1)) != offset:
                await self._forget(request, sink)
                raise _Transient(
                    ResumeMismatchError(
                        f"server answered a range request at {offset} with "
                        f"{response.headers.get('Content-Range')!r}; starting over",
                        url=request.url, episode=request.key,
                    )
                )
            return None if match.group(3) == "*" else int(match.group(3))
        if status == 200:
            if offset:
                log.info("%s: server sent the whole file again; starting over", request.key)
                await self._forget(request, sink)
            length = response.headers.get("Content-Length", "")
            return int(length) if length.isdigit() else None
        if status == 416:
            match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
            total = int(match.group(1)) if match else None
            if offset and total == offset:
                return total
            await self._forget(request, sink)
            raise _Transient(
                ResumeMismatchError(
                    f"server refused the range at {offset} (total {total}); starting over",
                    url=request.url, episode=request.key,
                )
            )
        raise _status_error(request.key, response)

    async def _forget(self, request: DownloadRequest, sink: _Sink) -> None:
        """Throw the partial bytes away so that the transfer starts at zero."""
        self.on_event(Restarted(request.key, sink.size))
        await asyncio.to_thread(sink.restart)
        with contextlib.suppress(FileNotFoundError):
            sidecar_path(request.partial).unlink()

    def _size_limit(
        self, request: DownloadRequest, announced: int | None
    ) -> tuple[int, SizeMismatchError | None]:
        """How many bytes may arrive before the body counts as too long, and the error
        to raise once the first bytes are known to be audio when the server's announced
        size already contradicts the document."""
        expected = request.expected_bytes
        if expected is not None and announced is not None and announced != expected:
            if self.settings.size_mismatch == "fail":
                return announced, SizeMismatchError(
                    expected, announced, episode=request.key,
                    detail=f"the server announces {announced}",
                )
            return announced, None
        if announced is not None:
            return announced, None
        if expected is not None:
            return (expected if self.settings.size_mismatch == "fail" else expected * 2), None
        return self.settings.max_bytes, None

    async def _get(self, key: str, start_url: str, headers: dict[str, str]) -> httpx.Response:
        """Send a GET, following redirects by hand; returns an open response."""
        assert self._client is not None
        url = start_url
        for _hop in range(self.settings.max_redirects + 1):
            try:
                response = await self._client.send(
                    self._client.build_request("GET", url, headers=headers), stream=True
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise _Transient(
                    IncompleteDownloadError(
                        f"cannot connect ({_cause(exc)})", url=url, episode=key
                    ),
                    no_connection=True,
                ) from None
            except httpx.TimeoutException:
                raise _Transient(
                    IncompleteDownloadError(
                        "timed out waiting for an answer", url=url, episode=key
                    )
                ) from None
            except httpx.TransportError as exc:
                raise _Transient(
                    IncompleteDownloadError(
                        f"connection failed ({type(exc).__name__})", url=url, episode=key
                    )
                ) from None
            except (httpx.InvalidURL, ValueError) as exc:
                raise DownloadError(
                    f"invalid URL ({type(exc).__name__})", url=url, episode=key
                ) from None
            header_bytes = sum(len(k) + len(v) for k, v in response.headers.raw)
            if header_bytes > MAX_HEADER_BYTES:
                await response.aclose()
                raise DownloadError(
                    f"server sent {header_bytes} bytes of headers (limit {MAX_HEADER_BYTES})",
                    url=url, episode=key,
                )
            if response.status_code not in REDIRECT_STATUSES:
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity") and response.status_code < 300:
                    await response.aclose()
                    raise DownloadError(
                        f"server sent Content-Encoding {encoding} although identity was asked",
                        url=url, episode=key,
                    )
                return response
            await response.aclose()
            location = response.headers.get("Location")
            if not location:
                raise RedirectError("redirect without a Location", url=url, episode=key)
            target = urljoin(url, location)
            scheme = urlsplit(target).scheme.lower()
            if scheme not in ("http", "https"):
                raise RedirectError(
                    f"redirect to a {scheme}: URL refused", url=url, episode=key
                )
            log.debug("%s: redirected to %s", key, redact_url(target))
            url = target
        raise RedirectError(
            f"more than {self.settings.max_redirects} redirects",
            url=start_url, episode=key,
        )

    async def fetch_small(self, key: str, url: str, *, max_bytes: int) -> bytes:
        """A small resource (a cover image) in memory, with the same redirect and retry
        rules as audio; larger than *max_bytes* is an error."""
        async with self._host_limit(url):
            return await self._retried(key, url, lambda: self._read_small(key, url, max_bytes))

    async def _read_small(self, key: str, url: str, max_bytes: int) -> bytes:
        response = await self._get(key, url, {})
        try:
            if response.status_code != 200:
                raise _status_error(key, response)
            data = bytearray()
            try:
                async for piece in response.aiter_raw():
                    data += piece
                    if len(data) > max_bytes:
                        raise DownloadError(
                            f"larger than the {max_bytes}-byte limit", url=url, episode=key
                        )
            except httpx.TransportError as exc:
                raise _Transient(
                    IncompleteDownloadError(
                        f"connection broke ({type(exc).__name__})", url=url, episode=key
                    )
                ) from None
            return bytes(data)
        finally:
            await response.aclose()

    async def _stream(
        self,
        request: DownloadRequest,
        response: httpx.Response,
        sink: _Sink,
        limit: int,
        mismatch: SizeMismatchError | None,
    ) -> None:
        """Copy the body into *sink* in CHUNK_SIZE writes; what arrived is kept on errors.

        The first bytes are sniffed before anything else is judged, so an HTML error
        page is reported as "not audio" whatever its size.
        """
        sniffing = sink.size == 0
        if mismatch is not None and not sniffing:
            raise mismatch
        head = b""
        buffer = bytearray()
        window_start = time.monotonic()
        window_bytes = 0
        settings = self.settings

        async def flush() -> None:
            nonlocal buffer
            if buffer:
                data, buffer = buffer, bytearray()
                await asyncio.to_thread(sink.write, data)
                self.on_event(Advanced(request.key, len(data)))
                failpoint("download-streaming")

        try:
            async for piece in response.aiter_raw():
                if sniffing:
                    head += piece[: 16 - len(head)]
                    if len(head) >= 16:
                        self._sniff(request, head)
                        sniffing = False
                        if mismatch is not None:
                            raise mismatch
                if sink.size + len(buffer) + len(piece) > limit:
                    buffer += piece[: limit - sink.size - len(buffer)]
                    await flush()
                    expected = request.expected_bytes or limit
                    raise SizeMismatchError(
                        expected, limit + 1, episode=request.key,
                        detail=f"the server sent more than {limit}; cut off",
                    )
                buffer += piece
                if len(buffer) >= CHUNK_SIZE:
                    await flush()
                window_bytes += len(piece)
                elapsed = time.monotonic() - window_start
                if elapsed >= settings.speed_window:
                    if window_bytes < settings.min_speed * elapsed:
                        await flush()
                        raise _Transient(
                            IncompleteDownloadError(
                                f"too slow: {window_bytes} bytes in {elapsed:.0f} s",
                                url=request.url, episode=request.key,
                            )
                        )
                    window_start, window_bytes = time.monotonic(), 0
        except asyncio.CancelledError:
            # Interrupted: keep what arrived so that the next run resumes from it.
            if buffer:
                sink.write(buffer)
            raise
        except httpx.TimeoutException:
            await flush()
            raise _Transient(
                IncompleteDownloadError(
                    f"read timed out after {sink.size} bytes", url=request.url,
                    episode=request.key,
                )
            ) from None
        except httpx.TransportError as exc:
            await flush()
            raise _Transient(
                IncompleteDownloadError(
                    f"connection broke after {sink.size} bytes ({type(exc).__name__})",
                    url=request.url, episode=request.key,
                )
            ) from None
        await flush()
        if sniffing:
            self._sniff(request, head)
        if mismatch is not None:
            raise mismatch

    def _sniff(self, request: DownloadRequest, head: bytes) -> None:
        if not looks_like_audio(head):
            raise NotAudioError(
                f"not audio: the server sent {describe_head(head)}", episode=request.key
            )

    async def _complete(
        self, request: DownloadRequest, sink: _Sink, offset: int, validators: _Validators
    ) -> Downloaded:
        received = sink.size
        total = validators.total
        if total is not None and received < total:
            raise _Transient(
                IncompleteDownloadError(
                    f"body ended after {received} of {total} bytes",
                    url=request.url, episode=request.key,
                )
            )
        self._sniff(request, await asyncio.to_thread(sink.head, 16))
        expected = request.expected_bytes
        discrepancy = False
        if expected is not None and received != expected:
            if self.settings.size_mismatch == "fail":
                raise SizeMismatchError(expected, received, episode=request.key)
            log.warning(
                "%s: size differs from the document: expected %d bytes, received %d",
                request.key, expected, received,
            )
            discrepancy = True
        digest = await asyncio.to_thread(sink.finish)
        return Downloaded(
            path=request.partial,
            size=received,
            audio_sha256=digest,
            etag=validators.etag,
            last_modified=validators.last_modified,
            expected_bytes=expected,
            resumed_from=offset,
            reserve=sink.reserve,
            size_discrepancy=discrepancy,
            url=request.url,
        )


def _status_error(key: str, response: httpx.Response) -> Exception:
    """A typed error for a status that is not success; transient ones marked for retry."""
    status = response.status_code
    error = HTTPStatusError(status, url=str(response.request.url), episode=key)
    if status in TRANSIENT_STATUSES:
        return _Transient(error, _retry_after_seconds(response.headers.get("Retry-After")))
    return error


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _cause(exc: BaseException) -> str:
    """A short reason from an httpx error, without the URL (it may hold a token)."""
    text = str(exc) or type(exc).__name__
    return re.sub(r"https?://\S+", "<url>", text)[:120]


#: Bytes asked of the socket per read. httpcore reads 64 KiB at a time; every read
#: passes through anyio, httpcore, h11 and httpx, so on a fast link that per-read cost
#: is most of fetcher's CPU. 1 MiB reads cut it by about a third (bench/README.md).
SOCKET_READ_BYTES = 1 << 20


def _larger_socket_reads() -> None:
    """Raise httpcore's per-read size (a class attribute, so process-wide)."""
    from httpcore._async.http11 import AsyncHTTP11Connection

    if getattr(AsyncHTTP11Connection, "READ_NUM_BYTES", 0) < SOCKET_READ_BYTES:
        AsyncHTTP11Connection.READ_NUM_BYTES = SOCKET_READ_BYTES
