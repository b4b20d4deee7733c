"""The one HTTP client factory: transports, the TLS context, connection limits.

- HTTP/1.1 only, identity encoding, no redirects (:mod:`fetcher.net.http` follows them
  by hand), no proxies or certificates from the environment;
- ``https://`` through httpcore's own network backend with 1 MiB reads
  (:mod:`fetcher.net.reads`);
- ``http://`` through bare sockets (:mod:`fetcher.net.sockets`), so that a large body
  can be read straight from its socket (:mod:`fetcher.net.body`);
- with ``[download] proxy``, both schemes through that proxy (CONNECT for TLS) on
  httpcore's backend, every body through httpx;
- one TLS context per CA file for the process, certificate checks always on.
"""

from __future__ import annotations

import functools
import ssl

import httpx

from fetcher.net.reads import larger_socket_reads
from fetcher.net.sockets import use_plain_sockets
from fetcher.settings import DownloadSettings


@functools.cache
def _tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The TLS context of the process (one per ``ca_file``): certificate checks on, as
    httpx's default, with *ca_file*'s authorities trusted too. Loading the CA store
    costs ~20 ms, once per client and transport otherwise."""
    context = httpx.create_ssl_context(trust_env=False)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class _Cookies(httpx.Cookies):
    """httpx's cookie store, reading an answer's cookies only when it sets some: httpx
    builds the standard library's request and response stand-ins for every answer
    (parsing the URL again), about a tenth of a small episode's HTTP time."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers or "set-cookie2" in response.headers:
            super().extract_cookies(response)


def make_client(settings: DownloadSettings, *, accept: str = "*/*") -> httpx.AsyncClient:
    """The client fetcher uses: HTTP/1.1, identity encoding, no redirects, no proxies
    from the environment, connection limits from *settings*, large socket reads, and
    bare sockets under ``http://`` (see :mod:`fetcher.net.sockets`)."""
    timeout = settings.timeout
    limits = httpx.Limits(max_connections=settings.jobs * 2,
                          max_keepalive_connections=settings.jobs * 2)
    tls = _tls_context(settings.ca_file)
    proxy = httpx.Proxy(settings.proxy) if settings.proxy else None
    transport = httpx.AsyncHTTPTransport(http1=True, http2=False, limits=limits,
                                         trust_env=False, verify=tls, proxy=proxy)
    # Through a proxy every connection reaches the proxy: the address rule is then
    # applied to the name only (fetcher.net.guard.check), and bodies come through httpx.
    larger_socket_reads(transport, check_peer=proxy is None)
    mounts: dict[str, httpx.AsyncBaseTransport] = {}
    if proxy is None:
        # Plain HTTP on bare sockets, so that large bodies can be read from them directly.
        plain = httpx.AsyncHTTPTransport(http1=True, http2=False, limits=limits,
                                         trust_env=False, verify=tls)
        if use_plain_sockets(plain):
            mounts["http://"] = plain
    client = httpx.AsyncClient(
        transport=transport,
        mounts=mounts,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout, connect=timeout, read=timeout, pool=None),
        headers={"User-Agent": settings.user_agent, "Accept-Encoding": "identity",
                 "Accept": accept},
        trust_env=False,
    )
    # A private name: were it to move, httpx's own store is kept (tests notice).
    if isinstance(getattr(client, "_cookies", None), httpx.Cookies):
        client._cookies = _Cookies()
    return client


def certificate_refused(exc: BaseException) -> str | None:
    """Why the server's TLS certificate was not trusted, when that is what *exc* is."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or "certificate verify failed")
        seen = seen.__cause__ or seen.__context__
    return None
