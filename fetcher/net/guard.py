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
        if is_never(address):
            raise DownloadError(f"refused: {host} is a link-local or cloud-metadata address, "
                                "and the feed supplied this URL", url=url, episode=key)
        if is_private(address) and trust == "remote" and not allow_private:
            raise DownloadError(
                f"refused: {host} is a private or loopback address and the feed is public "
                "([download] allow_private_addresses allows it)", url=url, episode=key)


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
