"""Audio bodies: Range/If-Range resume and the body loop, written into a staging sink.

:class:`Downloader` fetches one episode's audio into its partial file and hands back a
:class:`~fetcher.staging.Downloaded` that is proven whole (size and MPEG sniff) or
raises a typed :class:`~fetcher.errors.DownloadError` / :class:`~fetcher.errors.VerifyError`.

- the body streamed with ``Accept-Encoding: identity``, written and hashed off the
  event loop, never held in memory; a large plain-HTTP rest straight from the socket
  (:mod:`fetcher.net.body`); resume with ``Range`` + ``If-Range``, within a run and
  across runs (validators in the partial file's sidecar, see :mod:`fetcher.staging`);
- a server that ignores the range starts the file over; a body slower than
  ``min_speed`` over ``speed_window`` counts as stalled.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import typing
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from fetcher.audio import describe_head, looks_like_audio
from fetcher.errors import (
    FetcherError,
    HostUnreachableError,
    IncompleteDownloadError,
    NotAudioError,
    ResumeMismatchError,
    SizeMismatchError,
    redact_url,
    too_slow,
)
from fetcher.events import Advanced, EventSink, Failed, Finished, Restarted, Started, ignore
from fetcher.failpoints import failpoint
from fetcher.net.body import (
    DirectBody,
    Ending,
    Limits,
    body_threads,
    direct_body,
    end_pieces,
    read_rest,
)
from fetcher.net.http import Http, Transient, body_error, status_error
from fetcher.settings import DownloadSettings
from fetcher.staging import (
    Downloaded,
    Resume,
    Sink,
    Validators,
    discard_partial,
    resume_from,
    sidecar_path,
    url_digest,
)

log = logging.getLogger(__name__)

#: Body bytes gathered before one write to the partial file.
CHUNK_SIZE = 1 << 20

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DownloadRequest:
    key: str
    """Names the episode in events and errors."""
    url: str
    partial: Path
    expected_bytes: int | None = None
    #: Bytes kept free at the start of the partial file for the final tag.
    reserve: int = 0
    #: Stands for the URL in the sidecar (default: its SHA-256); never the URL itself.
    url_id: str = ""
    #: How far the URL is trusted (see :mod:`fetcher.net.guard`).
    trust: str = "own"
    #: ``expected_bytes`` is a hint (a feed's length): the server's total decides.
    size_is_hint: bool = False

    @property
    def identity(self) -> str:
        return self.url_id or url_digest(self.url)


class Downloader(Http):
    """Fetches episodes' audio; use as ``async with Downloader(settings) as d``."""

    def __init__(self, settings: DownloadSettings, *, on_event: EventSink = ignore,
                 client: httpx.AsyncClient | None = None):
        super().__init__(settings, on_event=on_event, client=client)
        self._body_threads: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> Downloader:
        await super().__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        if self._body_threads is not None:
            # Every body has ended by now (cancelled ones wait for their thread): the
            # threads are idle and end at once.
            self._body_threads.shutdown(wait=True)
            self._body_threads = None

    async def fetch(self, request: DownloadRequest) -> Downloaded:
        """Download *request* into its partial file; raises a FetcherError on failure."""
        try:
            self.check_reachable(request.key, request.url)
            async with self.jobs, self.host_limit(request.url):
                result = await self.retried(request.key, lambda: self._attempt(request))
        except FetcherError as error:
            self.on_event(Failed(request.key, str(error)))
            raise
        self.on_event(Finished(request.key, result.size))
        return result

    # One attempt: request (following redirects), check the answer, stream the body.

    async def _attempt(self, request: DownloadRequest) -> Downloaded:
        partial = request.partial
        # Without a partial file (a new download) nothing on disk is read.
        resume = (await asyncio.to_thread(resume_from, partial, request.identity,
                                          request.reserve) if partial.exists()
                  else Resume(0, None, request.reserve))
        if resume.finished is not None:
            log.info("%s: finishing a download verified in an earlier run", request.key)
            return resume.finished
        validators, offset = resume.validators, resume.offset
        # A new partial file is made by the first write; resuming one re-hashes it.
        sink = (await asyncio.to_thread(Sink, partial, offset, resume.reserve) if offset
                else Sink(partial, 0, resume.reserve))
        try:
            try:
                return await self._transfer(request, sink, validators)
            finally:
                sink.close()
        except HostUnreachableError:
            # Nothing was said about the bytes: what arrived resumes on a later run.
            if sink.size == 0:
                discard_partial(partial)
            raise
        except FetcherError:
            # Bytes that failed verification are not worth resuming.
            discard_partial(partial)
            raise
        except Transient:
            if sink.size == 0:
                # Nothing arrived: no reserve-sized file without a sidecar stays behind.
                discard_partial(partial)
            raise

    async def _transfer(self, request: DownloadRequest, sink: Sink,
                        validators: Validators | None) -> Downloaded:
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

        response = await self.open(request.key, request.url, headers, trust=request.trust)
        try:
            total = await self._check_answer(request, response, sink, offset)
            offset = sink.size
            if response.status_code == 416:
                assert validators is not None
                self.on_event(Started(request.key, redact_url(request.url), offset, total))
                return await self._complete(request, sink, offset, validators)
            validators = Validators(request.identity, response.headers.get("ETag"),
                                    response.headers.get("Last-Modified"), total, sink.reserve)
            sink.expect(validators)  # written with the body's first bytes
            limit, mismatch = self._size_limit(request, total)
            self.on_event(Started(request.key, redact_url(request.url), offset, total))
            head = await self._stream(request, response, sink, limit, mismatch)
        finally:
            await response.aclose()
        return await self._complete(request, sink, offset, validators, head)

    async def _check_answer(self, request: DownloadRequest, response: httpx.Response,
                            sink: Sink, offset: int) -> int | None:
        """Decide what the status means for the partial file; returns the body's total."""
        status = response.status_code
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or not offset or int(match.group(1)) != offset:
                await self._forget(request, sink)
                raise Transient(ResumeMismatchError(
                    f"server answered a range request at {offset} with "
                    f"{response.headers.get('Content-Range')!r}; starting over",
                    url=request.url, episode=request.key,
                ))
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
            raise Transient(ResumeMismatchError(
                f"server refused the range at {offset} (total {total}); starting over",
                url=request.url, episode=request.key,
            ))
        raise status_error(request.key, response)

    async def _forget(self, request: DownloadRequest, sink: Sink) -> None:
        """Throw the partial bytes away so that the transfer starts at zero."""
        self.on_event(Restarted(request.key, sink.size))
        await asyncio.to_thread(sink.restart)
        sidecar_path(request.partial).unlink(missing_ok=True)

    def _size_limit(self, request: DownloadRequest,
                    announced: int | None) -> tuple[int, SizeMismatchError | None]:
        """How many bytes may arrive before the body counts as too long, and the error
        to raise once the first bytes are known to be audio when the server's announced
        size already contradicts the document."""
        expected = request.expected_bytes
        if request.size_is_hint:
            # A feed's length is wrong or 0 in many real feeds: the server decides.
            return (announced if announced is not None else self.settings.max_bytes), None
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

    async def _stream(self, request: DownloadRequest, response: httpx.Response, sink: Sink,
                      limit: int, mismatch: SizeMismatchError | None) -> bytes:
        """Copy the body into *sink* in CHUNK_SIZE writes; what arrived is kept on errors.

        The first bytes are sniffed before anything else is judged, so an HTML error
        page is reported as "not audio" whatever its size; returns them (nothing for a
        resumed body, whose first bytes arrived earlier).
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

        pieces = typing.cast(AsyncGenerator[bytes, None], response.aiter_raw())
        received_here = 0
        looked_for_direct = False
        taken: DirectBody | None = None
        whole = False
        try:
            async for piece in pieces:
                received_here += len(piece)
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
                        raise Transient(IncompleteDownloadError(
                            too_slow(window_bytes, elapsed), url=request.url,
                            episode=request.key))
                    window_start, window_bytes = time.monotonic(), 0
                if sniffing or looked_for_direct:
                    continue
                # Once the first bytes are judged, a large rest may come straight from the
                # socket (fetcher.net.body); the direct path never passes the size limit.
                looked_for_direct = True
                direct = direct_body(response, received_here)
                if direct is not None and sink.size + len(buffer) + direct.remaining <= limit:
                    taken, first, buffer = direct, buffer, bytearray()
                    await self._read_direct(request, direct, sink, first)
                    whole = True
                    break
        except asyncio.CancelledError:
            # Interrupted: keep what arrived so that the next run resumes from it.
            if buffer:
                sink.write(buffer)
            raise
        except httpx.TransportError as exc:
            await flush()
            raise body_error(exc, url=request.url, key=request.key, received=sink.size) from None
        finally:
            await end_pieces(pieces, taken, whole)
        await flush()
        if sniffing:
            self._sniff(request, head)
        if mismatch is not None:
            raise mismatch
        return head

    async def _read_direct(self, request: DownloadRequest, body: DirectBody,
                           sink: Sink, first: bytearray) -> None:
        """The rest of the body from the socket itself (see :mod:`fetcher.net.body`),
        after *first*, the bytes received through httpx and not yet written."""
        settings = self.settings
        limits = Limits(settings.timeout, settings.min_speed, settings.speed_window)
        if self._body_threads is None:
            self._body_threads = body_threads(settings.jobs)
        result = await read_rest(
            body, sink, limits, lambda count: self.on_event(Advanced(request.key, count)),
            self._body_threads, first)
        if result.ending is not Ending.COMPLETE:
            raise Transient(IncompleteDownloadError(
                result.describe(sink.size), url=request.url, episode=request.key))

    def _sniff(self, request: DownloadRequest, head: bytes) -> None:
        if not looks_like_audio(head):
            raise NotAudioError(f"not audio: the server sent {describe_head(head)}",
                                episode=request.key)

    async def _complete(self, request: DownloadRequest, sink: Sink, offset: int,
                        validators: Validators, head: bytes = b"") -> Downloaded:
        """Check a body that ended (*head*: its first bytes, when this attempt saw them)."""
        received = sink.size
        total = validators.total
        if total is not None and received < total:
            raise Transient(IncompleteDownloadError(
                f"body ended after {received} of {total} bytes",
                url=request.url, episode=request.key,
            ))
        if len(head) < 16:
            head = sink.head(16)  # one read of the partial file (a resumed body)
        digest = sink.digest()
        self._sniff(request, head)
        expected = request.expected_bytes
        discrepancy = False
        if expected is not None and received != expected and request.size_is_hint:
            log.info("%s: the feed gives %d bytes, the server sent %d (recorded)",
                     request.key, expected, received)
            discrepancy = True
        elif expected is not None and received != expected:
            if self.settings.size_mismatch == "fail":
                raise SizeMismatchError(expected, received, episode=request.key)
            log.warning("%s: size differs from the document: expected %d bytes, received %d",
                        request.key, expected, received)
            discrepancy = True
        return Downloaded(
            path=request.partial, size=received, audio_sha256=digest, etag=validators.etag,
            last_modified=validators.last_modified, expected_bytes=expected,
            resumed_from=offset, reserve=sink.reserve, size_discrepancy=discrepancy,
            url_id=request.identity,
        )
