"""The rest of a large body read straight from its socket, in one thread per body.

httpx sends the request, follows nothing (redirects are ours), reads the headers and
the first body bytes; from then on a plain-HTTP body with a known length is read by
:func:`read_rest` with ``recv_into`` into one reused buffer, hashed and written by the
same thread: one hand-off per body instead of several per read, no copies between
layers, and on a fast link one system call per mebibyte (the socket blocks, with a
receive timeout, and each read waits for a whole piece). What the body loop promises
is kept here too:

- bytes that arrived are written before any error is reported (a timeout, a broken
  connection, a cancellation): a retry resumes after them;
- a read that waits longer than the timeout ends the attempt (``timed out``);
- a body slower than ``min_speed`` over ``speed_window`` ends it (``too slow``);
- a cancelled task stops the thread within :data:`POLL_SECONDS` and keeps the bytes.

After a body read whole this way, h11 is told that its body has ended (the one private
attribute fetcher sets in h11: its Content-Length reader's count of bytes to come), so
the connection goes back to httpcore's pool for the next episode. A body that ended
early leaves h11 waiting for bytes that never come: its connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from fetcher.errors import connection_broke, read_timed_out, too_slow
from fetcher.failpoints import failpoint
from fetcher.net.sockets import PlainSocketStream
from fetcher.staging import Sink

#: Body bytes gathered before one write to the partial file.
CHUNK_SIZE = 1 << 20
#: Bodies with less than this left after the first read stay on httpx's path (and keep
#: their connection for the next request).
DIRECT_MIN_BYTES = 256 * 1024
#: How often a waiting reader looks at the cancel flag and the speed window.
POLL_SECONDS = 0.1
#: On a slow link, bytes are written (and progress reported) at least this often.
FLUSH_SECONDS = 0.25


class Ending(enum.Enum):
    COMPLETE = "complete"
    CLOSED = "closed"  # the peer closed the connection before the end
    BROKEN = "broken"  # the socket failed
    TIMED_OUT = "timed out"
    TOO_SLOW = "too slow"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class DirectBody:
    stream: PlainSocketStream
    #: Body bytes still on the wire.
    remaining: int
    #: h11's reader of the body (a ContentLengthReader), to be told of its end; None
    #: when httpx's, httpcore's or h11's private names moved (the connection is closed).
    reader: Any = None

    @property
    def sock(self) -> socket.socket:
        return self.stream.sock


@dataclass(frozen=True, slots=True)
class Result:
    ending: Ending
    received: int
    detail: str = ""

    def describe(self, kept: int) -> str:
        """Why the body ended early, in the httpx path's words (*kept*: bytes in the file)."""
        if self.ending is Ending.TOO_SLOW:
            return self.detail
        if self.ending is Ending.TIMED_OUT:
            return read_timed_out(kept)
        return connection_broke(kept, self.detail or "closed by the server")


@dataclass(frozen=True, slots=True)
class Limits:
    timeout: float
    min_speed: float
    speed_window: float


def direct_body(response: httpx.Response, received: int) -> DirectBody | None:
    """The socket under *response* when the rest of its body may be read directly:
    a plain-HTTP/1.1 connection of fetcher's own backend, a body framed by
    Content-Length (after the first read h11 holds nothing back), enough left to pay."""
    stream = response.extensions.get("network_stream")
    if not isinstance(stream, PlainSocketStream) or response.http_version != "HTTP/1.1":
        return None
    if "Transfer-Encoding" in response.headers:
        return None
    length = response.headers.get("Content-Length", "")
    if not length.isdigit():
        return None
    remaining = int(length) - received
    if remaining < DIRECT_MIN_BYTES:
        return None
    reader = _body_reader(response)
    return DirectBody(stream, remaining,
                      reader if getattr(reader, "_remaining", None) == remaining else None)


def _body_reader(response: httpx.Response) -> Any:
    """h11's reader of *response*'s body, through httpx's and httpcore's private names
    (response stream, httpcore stream, pool stream, HTTP/1.1 connection), or None."""
    stream: Any = response.stream
    try:
        reader = stream._stream._httpcore_stream._stream._connection._h11_state._reader
    except AttributeError:
        return None
    return reader if type(reader).__name__ == "ContentLengthReader" else None


async def end_pieces(pieces: AsyncGenerator[bytes, None], direct: DirectBody | None,
                     whole: bool = False) -> None:
    """End httpx's body iterator *pieces* (left suspended, each iterator under it would
    be finalised later by a task of its own).

    After a direct read of the *whole* body, h11 is told that no byte is to come: it
    ends the response, and httpcore keeps the connection for the next request. After a
    direct read that ended early, the stream reports the end of the connection, so the
    iterators finish at once and httpcore closes it.
    """
    if direct is None:
        await pieces.aclose()
        return
    reader = direct.reader
    if whole and reader is not None and getattr(reader, "_remaining", None) == direct.remaining:
        reader._remaining = 0
    else:
        direct.stream.taken = True
    with contextlib.suppress(httpx.HTTPError):
        async for _ in pieces:
            pass


def body_threads(jobs: int) -> ThreadPoolExecutor:
    """The threads bodies are read in: one per job, so that a body never waits for a
    thread (and never takes one from the default executor's other work)."""
    return ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="fetcher-body")


async def read_rest(body: DirectBody, sink: Sink, limits: Limits,
                    progress: Callable[[int], None], threads: Executor,
                    first: bytes | bytearray = b"") -> Result:
    """Write *first* (bytes already received), then read *body* into *sink*, in one of
    *threads*; *progress* is called on the event loop with each count of bytes written.
    Cancelling waits for the thread to stop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Result] = loop.create_future()
    cancel = threading.Event()

    def report(count: int) -> None:
        loop.call_soon_threadsafe(progress, count)

    def settle(result: Result | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            assert result is not None
            done.set_result(result)

    def run() -> None:
        try:
            if first:
                sink.write(first)
                report(len(first))
            result = _pump(body, sink, limits, cancel, report)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(settle, None, error)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threads.submit(run)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        cancel.set()
        while not done.done():
            try:
                await asyncio.shield(done)
            except asyncio.CancelledError:
                continue
            except BaseException:  # noqa: BLE001 - the cancellation is what is reported
                break
        raise


def _pump(body: DirectBody, sink: Sink, limits: Limits, cancel: threading.Event,
          report: Callable[[int], None]) -> Result:
    """Read the body in CHUNK_SIZE pieces: the socket is made blocking for the while,
    with a receive timeout of POLL_SECONDS, and each read waits for a whole piece
    (MSG_WAITALL), returning early with what arrived when the timeout passes: one
    system call per mebibyte on a fast link, a look at the flags every POLL_SECONDS on
    a slow one."""
    sock = body.sock
    buffer = bytearray(min(CHUNK_SIZE, body.remaining))
    view = memoryview(buffer)
    remaining = body.remaining
    filled = received = 0
    now = last_data = window_start = flushed = time.monotonic()
    window_bytes = 0
    ending = Ending.COMPLETE
    detail = ""

    def flush() -> None:
        nonlocal filled
        if filled:
            sink.write(view[:filled])
            report(filled)
            filled = 0
            failpoint("download-streaming")

    sock.setblocking(True)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _POLL_TIMEVAL)
    try:
        while remaining:
            if cancel.is_set():
                ending = Ending.CANCELLED
                break
            try:
                count = sock.recv_into(view[filled:], min(remaining, len(buffer) - filled),
                                       socket.MSG_WAITALL)
            except BlockingIOError:  # the receive timeout passed with nothing new
                now = time.monotonic()
                if now - last_data >= limits.timeout:
                    ending = Ending.TIMED_OUT
                    break
                count = -1
            except InterruptedError:
                continue
            except OSError as error:
                ending, detail = Ending.BROKEN, type(error).__name__
                break
            if count == 0:
                ending = Ending.CLOSED
                break
            if count > 0:
                now = last_data = time.monotonic()
                filled += count
                received += count
                remaining -= count
                window_bytes += count
                if filled == len(buffer) or not remaining or now - flushed >= FLUSH_SECONDS:
                    flush()
                    flushed = now
            elapsed = now - window_start
            if elapsed >= limits.speed_window:
                if window_bytes < limits.min_speed * elapsed:
                    ending, detail = Ending.TOO_SLOW, too_slow(window_bytes, elapsed)
                    break
                window_start, window_bytes = now, 0
    finally:
        # Whatever happened, the bytes that arrived are kept for the resume.
        flush()
        with contextlib.suppress(OSError):
            # As asyncio (and the next request on this connection) expects it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _NO_TIMEVAL)
            sock.setblocking(False)
    return Result(ending, received, detail)


def _timeval(seconds: float) -> bytes:
    """A struct timeval for SO_RCVTIMEO (time_t and suseconds_t are C longs)."""
    whole, micro = divmod(round(seconds * 1_000_000), 1_000_000)
    return struct.pack("ll", whole, micro)


_POLL_TIMEVAL = _timeval(POLL_SECONDS)
_NO_TIMEVAL = _timeval(0)
