"""The one HTTP client of a run, and the one place httpx's errors are translated.

:class:`Http` owns the ``httpx.AsyncClient`` (made by :mod:`fetcher.net.client`), the global
and per-host limits, the retry policy (tenacity: transient failures only, jittered
backoff or ``Retry-After``, a bounded total wait per request), redirects followed by
hand (at most ``max_redirects``, http/https only), small in-memory bodies (images,
chapters, transcripts, feeds) and the memo of origins that could not be reached.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from fetcher.errors import (
    DownloadError,
    HostUnreachableError,
    HTTPStatusError,
    IncompleteDownloadError,
    RedirectError,
    connection_broke,
    read_timed_out,
    redact_url,
)
from fetcher.events import EventSink, Retrying, ignore
from fetcher.net import guard
from fetcher.net.client import certificate_refused, make_client
from fetcher.settings import DownloadSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Answers a small fetch hands back for its caller to judge (a feed that is gone).
PASSED_STATUSES = (410,)
#: Response headers larger than this are a flood, not a podcast host.
MAX_HEADER_BYTES = 64 * 1024
#: What fetcher's clients ask for: audio first (feeds and images are accepted too).
AUDIO_ACCEPT = "audio/mpeg, audio/*;q=0.9, */*;q=0.1"
#: A redirect's body is read (so that the connection can be kept) up to this size.
MAX_REDIRECT_BODY = 64 * 1024


class Transient(Exception):
    """Marks an error as worth another attempt; carries the typed error out."""

    def __init__(self, error: DownloadError, retry_after: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


@functools.lru_cache(maxsize=1024)
def origin(url: str) -> str:
    """``scheme://host:port`` of *url* (the port made explicit), or "" when unparseable."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or {"http": 80, "https": 443}.get(scheme, 0)
        return f"{scheme}://{(parts.hostname or '').lower()}:{port}"
    except ValueError:
        return ""


@functools.lru_cache(maxsize=1024)
def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def retry_after_seconds(value: str | None) -> float | None:
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


def cause(exc: BaseException) -> str:
    """A short reason from an httpx error, without the URL (it may hold a token)."""
    text = str(exc) or type(exc).__name__
    return re.sub(r"https?://\S+", "<url>", text)[:120]


def status_error(key: str, response: httpx.Response) -> Exception:
    """A typed error for a status that is not success; transient ones marked for retry."""
    status = response.status_code
    error = HTTPStatusError(status, url=str(response.request.url), episode=key)
    if status in TRANSIENT_STATUSES:
        return Transient(error, retry_after_seconds(response.headers.get("Retry-After")))
    return error


def body_error(exc: httpx.TransportError, *, url: str, key: str, received: int) -> Transient:
    """Translate an error raised while a body streams; what arrived is kept by the caller."""
    if isinstance(exc, httpx.TimeoutException):
        message = read_timed_out(received)
    else:
        message = connection_broke(received, type(exc).__name__)
    log.debug("%s: %s", key, cause(exc))
    return Transient(IncompleteDownloadError(message, url=url, episode=key))


class Http:
    """Use as ``async with Http(settings) as http``; every method raises FetcherErrors."""

    def __init__(self, settings: DownloadSettings, *, on_event: EventSink = ignore,
                 client: httpx.AsyncClient | None = None):
        self.settings = settings
        self.on_event = on_event
        self._client = client
        self._own_client = client is None
        # Connections for remote-supplied URLs are never shared with the user's own: the
        # address guard checks each connection once, when it is made (fetcher.net.guard).
        self._untrusted: dict[str, httpx.AsyncClient] = {}
        self.jobs = asyncio.Semaphore(settings.jobs)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        # Origins that could not be reached at all after every retry: the rest of the
        # run fails their requests at once instead of waiting through the same retries.
        self.unreachable: dict[str, str] = {}

    async def __aenter__(self) -> Http:
        if self._client is None:
            self._client = make_client(self.settings, accept=AUDIO_ACCEPT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
        for client in self._untrusted.values():
            await client.aclose()
        self._untrusted.clear()

    def _client_for(self, trust: str) -> httpx.AsyncClient:
        """The client (and so the connection pool) for requests of *trust*: one per trust
        level, so that a connection checked for one level never serves another."""
        assert self._client is not None, "use Http as an async context manager"
        if trust == "own" or not self._own_client:
            return self._client
        client = self._untrusted.get(trust)
        if client is None:
            client = self._untrusted[trust] = make_client(
                self.settings, accept=AUDIO_ACCEPT)
        return client

    def host_limit(self, url: str) -> asyncio.Semaphore:
        host = host_of(url)
        if host not in self._hosts:
            self._hosts[host] = asyncio.Semaphore(self.settings.per_host)
        return self._hosts[host]

    # --- retries --------------------------------------------------------------------

    async def retried(self, key: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run *attempt* under the retry policy; unwrap the typed error at the end.

        The waits of one request add up to at most ``max_retry_wait`` seconds: a
        ``Retry-After`` beyond what is left ends the retries at once, with the reason.
        """
        budget = [self.settings.max_retry_wait]
        try:
            async for try_ in self._retrying(key, budget):
                with try_:
                    return await attempt()
        except Transient as transient:
            error = transient.error
            if error.unreachable:
                self.unreachable[error.unreachable] = error.reason
            if transient.retry_after is not None and transient.retry_after > budget[0]:
                raise DownloadError(
                    f"{error.reason}; the server asks to retry after "
                    f"{transient.retry_after:.0f} s, more than the "
                    f"{self.settings.max_retry_wait:.0f} s allowed per episode "
                    "([download] max_retry_wait)", url=error.url, episode=key,
                ) from None
            raise error from None
        raise AssertionError("tenacity ended without a result")  # pragma: no cover

    def _retrying(self, key: str, budget: list[float]) -> AsyncRetrying:
        def retry(error: BaseException) -> bool:
            if not isinstance(error, Transient):
                return False
            return error.retry_after is None or error.retry_after <= budget[0]

        return AsyncRetrying(
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=lambda state: self._wait(state, budget),
            retry=retry_if_exception(retry),
            before_sleep=lambda state: self._announce_retry(key, state),
            sleep=asyncio.sleep,
            reraise=True,
        )

    def _wait(self, state: RetryCallState, budget: list[float]) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, Transient) and error.retry_after is not None:
            wait = error.retry_after
        else:
            base = self.settings.backoff * 2.0 ** (state.attempt_number - 1)
            wait = min(base, 60.0) * random.uniform(0.5, 1.5)
        wait = max(0.0, min(wait, budget[0]))
        budget[0] -= wait
        return wait

    def _announce_retry(self, key: str, state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        reason = str(error.error.reason) if isinstance(error, Transient) else str(error)
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.debug("%s: %s; retry %d in %.1fs", key, reason, state.attempt_number, wait)
        self.on_event(Retrying(key, state.attempt_number, wait, reason))

    # --- requests -------------------------------------------------------------------

    async def open(self, key: str, start_url: str,
                   headers: Mapping[str, str] | None = None,
                   hops: list[tuple[int, str]] | None = None, *,
                   trust: str = "own") -> httpx.Response:
        """Send a GET, following redirects by hand; returns an open, streaming response.

        Each redirect followed is appended to *hops* as (status, target URL). A URL a
        remote feed supplied (*trust* other than ``own``) is checked at every hop
        (:mod:`fetcher.net.guard`). Raises :class:`Transient` for what another attempt
        may cure.
        """
        assert self._client is not None, "use Http as an async context manager"
        url = start_url
        for _hop in range(self.settings.max_redirects + 1):
            self.check_reachable(key, url)
            await guard.check(url, trust, allow_private=self.settings.allow_private_addresses,
                              key=key)
            with guard.policy(trust, self.settings.allow_private_addresses):
                response = await self._send(key, url, dict(headers or {}),
                                            self._client_for(trust))
            if response.status_code not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            await self._drain(response)
            if not location:
                raise RedirectError("redirect without a Location", url=url, episode=key)
            target = urljoin(url, location)
            scheme = urlsplit(target).scheme.lower()
            if scheme not in ("http", "https"):
                raise RedirectError(f"redirect to a {scheme}: URL refused", url=url,
                                    episode=key)
            log.debug("%s: redirected to %s", key, redact_url(target))
            if hops is not None:
                hops.append((response.status_code, target))
            url = target
        raise RedirectError(f"more than {self.settings.max_redirects} redirects",
                            url=start_url, episode=key)

    def check_reachable(self, key: str, url: str) -> None:
        """HostUnreachableError when *url*'s origin could not be reached earlier."""
        where = origin(url)
        known = self.unreachable.get(where)
        if known is not None:
            raise HostUnreachableError(f"host unreachable earlier in this run ({known})",
                                       url=url, episode=key, unreachable=where)

    async def _send(self, key: str, url: str, headers: dict[str, str],
                    client: httpx.AsyncClient) -> httpx.Response:
        try:
            request = client.build_request("GET", url, headers=headers)
            response = await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            refused = certificate_refused(exc)
            if refused is not None:
                # The same handshake would fail again: no retries, and the rest of the
                # run's requests to this origin fail at once with the same reason.
                reason = f"TLS certificate refused: {refused}"
                self.unreachable[origin(url)] = reason
                raise DownloadError(reason, url=url, episode=key,
                                    unreachable=origin(url)) from None
            raise Transient(IncompleteDownloadError(
                f"cannot connect ({cause(exc)})", url=url, episode=key,
                unreachable=origin(url))) from None
        except httpx.TimeoutException:
            raise Transient(IncompleteDownloadError(
                "timed out waiting for an answer", url=url, episode=key)) from None
        except httpx.TransportError as exc:
            raise Transient(IncompleteDownloadError(
                f"connection failed ({type(exc).__name__})", url=url, episode=key)) from None
        except guard.ConnectRefused as exc:
            raise DownloadError(str(exc), url=url, episode=key) from None
        except (httpx.InvalidURL, ValueError) as exc:
            # The URL may carry a secret: the cause goes to the debug log only.
            log.debug("%s: invalid URL: %s", key, cause(exc))
            raise DownloadError(f"invalid URL ({type(exc).__name__})", url=url,
                                episode=key) from None
        header_bytes = sum(len(k) + len(v) for k, v in response.headers.raw)
        if header_bytes > MAX_HEADER_BYTES:
            await response.aclose()
            raise DownloadError(
                f"server sent {header_bytes} bytes of headers (limit {MAX_HEADER_BYTES})",
                url=url, episode=key,
            )
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity") and response.status_code < 300:
            await response.aclose()
            raise DownloadError(
                f"server sent Content-Encoding {encoding} although identity was asked",
                url=url, episode=key,
            )
        return response

    @staticmethod
    async def _drain(response: httpx.Response) -> None:
        """Read a short redirect body so that its connection can serve the next hop."""
        received = 0
        try:
            async for piece in response.aiter_raw():
                received += len(piece)
                if received > MAX_REDIRECT_BODY:
                    break
        except httpx.HTTPError:
            pass  # the connection is not reused; nothing else is lost
        finally:
            await response.aclose()

    async def fetch_small(self, key: str, url: str, *, max_bytes: int,
                          headers: Mapping[str, str] | None = None,
                          trust: str = "own") -> bytes:
        """A small resource (image, chapters, transcript) in memory, with the same
        redirect and retry rules as audio; larger than *max_bytes* is an error."""
        small = await self.fetch_response(key, url, max_bytes=max_bytes, headers=headers,
                                          trust=trust)
        if small.status != 200:
            raise HTTPStatusError(small.status, url=url, episode=key)
        return small.body

    async def fetch_response(self, key: str, url: str, *, max_bytes: int,
                             headers: Mapping[str, str] | None = None,
                             trust: str = "own") -> SmallResponse:
        """Like :meth:`fetch_small`, but a 200 or 304 is returned with its headers and
        the URL finally reached (for conditional requests and feed redirects)."""
        async with self.host_limit(url):
            return await self.retried(
                key, lambda: self._read_small(key, url, max_bytes, headers or {}, trust)
            )

    async def _read_small(self, key: str, url: str, max_bytes: int,
                          headers: Mapping[str, str], trust: str) -> SmallResponse:
        hops: list[tuple[int, str]] = []
        response = await self.open(key, url, headers, hops, trust=trust)
        try:
            if response.status_code not in (200, 304, *PASSED_STATUSES):
                raise status_error(key, response)
            data = bytearray()
            try:
                async for piece in response.aiter_raw():
                    data += piece
                    if len(data) > max_bytes:
                        raise DownloadError(f"larger than the {max_bytes}-byte limit",
                                            url=url, episode=key)
            except httpx.TransportError as exc:
                raise body_error(exc, url=url, key=key, received=len(data)) from None
            return SmallResponse(response.status_code, bytes(data), dict(response.headers),
                                 str(response.url), tuple(hops))
        finally:
            await response.aclose()


@dataclass(frozen=True, slots=True)
class SmallResponse:
    """A whole small body and what the server said about it."""

    status: int
    body: bytes
    headers: dict[str, Any]
    final_url: str
    #: The redirects followed, as (status, target URL).
    redirects: tuple[tuple[int, str], ...] = ()
