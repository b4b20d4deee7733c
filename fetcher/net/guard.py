"""Where URLs that a remote feed supplies may lead.

What the user points at directly (local files, URLs on the command line or in the
config) is the user's own and is followed as given (trust ``own``). URLs a *remote*
feed supplies (enclosures, chapters, transcripts, images, next pages, and redirects
reached from them) are not: they never lead to link-local or cloud-metadata addresses,
and reach loopback or private addresses only when the feed itself came from such an
address (trust ``remote-private``) or ``[download] allow_private_addresses`` says so.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import urlsplit

from fetcher.errors import DownloadError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Never, for remote-supplied URLs: link-local (cloud metadata lives there) and the
#: metadata addresses some clouds use outside it.
_NEVER = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"),
          ipaddress.ip_network("fd00:ec2::254/128"), ipaddress.ip_network("100.100.100.200/32"))


def is_never(address: IPAddress) -> bool:
    return any(address in network for network in _NEVER)


def is_private(address: IPAddress) -> bool:
    """Loopback, private, shared (CGNAT), unspecified or reserved: not the public net."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (address.is_private or address.is_loopback or address.is_unspecified
            or address.is_reserved or address.is_link_local or address.is_multicast
            or address in ipaddress.ip_network("100.64.0.0/10"))


async def addresses_of(host: str, port: int) -> list[IPAddress]:
    """The addresses *host* resolves to (a literal address is itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []  # the connection attempt reports the failure in its own words
    found: list[IPAddress] = []
    for info in infos:
        address = info[4][0]
        if isinstance(address, str):
            found.append(ipaddress.ip_address(address.split("%")[0]))
    return found


def refusal(address: IPAddress, host: str, trust: str, allow_private: bool) -> str | None:
    """Why *address* (of *host*) may not be reached under *trust*, or None."""
    if trust == "own":
        return None
    if is_never(address):
        return (f"refused: {host} is a link-local or cloud-metadata address, and the feed "
                "supplied this URL")
    if is_private(address) and trust == "remote" and not allow_private:
        return (f"refused: {host} is a private or loopback address and the feed is public "
                "([download] allow_private_addresses allows it)")
    return None


async def check(url: str, trust: str, *, allow_private: bool, key: str) -> None:
    """Raise DownloadError when *url* may not be followed under *trust*."""
    if trust == "own":
        return
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return  # the request itself reports an invalid URL
    for address in await addresses_of(host, port):
        reason = refusal(address, host, trust, allow_private)
        if reason is not None:
            raise DownloadError(reason, url=url, episode=key)


# --- the same rule where the connection is made -------------------------------------
#
# :func:`check` resolves the host before the request; the connection resolves it again,
# and a name whose answer changes in between (DNS rebinding) would slip through. So the
# request's trust travels with it (a context variable, set around each send) to the
# network backends, which check the address they actually connected to before a byte
# of the request is sent.

_policy: ContextVar[tuple[str, bool] | None] = ContextVar("fetcher_connect_policy",
                                                          default=None)


class ConnectRefused(Exception):
    """A connection reached an address the request's trust forbids (see above)."""


@contextmanager
def policy(trust: str, allow_private: bool) -> Iterator[None]:
    """Connections made inside this block obey *trust*."""
    token = _policy.set((trust, allow_private) if trust != "own" else None)
    try:
        yield
    finally:
        _policy.reset(token)


def check_connected(peer: object, host: str) -> None:
    """Raise ConnectRefused when *peer* (a socket address) is forbidden right now."""
    current = _policy.get()
    if current is None or not isinstance(peer, tuple) or not peer:
        return
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%")[0])
    except ValueError:
        return
    reason = refusal(address, host, *current)
    if reason is not None:
        raise ConnectRefused(f"{reason} (it resolved to {address} when connecting)")


async def trust_of_feed(url: str) -> str:
    """The trust a feed fetched from *url* lends the URLs it supplies."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
    except ValueError:
        return "remote"
    addresses = await addresses_of(host, port)
    if addresses and all(is_private(a) for a in addresses):
        return "remote-private"
    return "remote"
