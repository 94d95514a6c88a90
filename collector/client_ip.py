"""The client's IP address: the peer, or what trusted proxies say in ``X-Forwarded-For``.

Each proxy appends the address it received the request from, so the list is read from the
right: the first address that is not a trusted proxy is the client. Anything left of it was
written by the client itself and may be forged. Without trusted proxies the header is ignored.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.requests import HTTPConnection

__all__ = ["IPNetwork", "client_ip", "parse_address"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> _IPAddress | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``)."""
    value = text.strip().strip('"')
    if value.startswith("["):  # [v6] or [v6]:port
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # v4:port; a bare v6 address has at least two colons
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # ::ffff:10.0.0.1 is how a dual-stack socket shows an IPv4 peer; trust rules name the v4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def _peer(text: str) -> tuple[_IPAddress | None, str | None]:
    # The same peers (a load balancer, returning clients) connect again and again: parsing
    # and writing an address back was ~1% of a request's CPU.
    address = parse_address(text)
    return address, None if address is None else str(address)


def _trusted(address: _IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_ip(
    scope_or_request: HTTPConnection | Mapping[str, Any], trusted: Iterable[IPNetwork]
) -> str | None:
    """The client's address as text, or ``None`` when it cannot be known.

    ``trusted`` lists the networks of reverse proxies whose ``X-Forwarded-For`` is believed;
    the header is read only when the connection comes from one of them. ``None`` comes back
    for a connection without a peer address (a Unix socket) or a trusted chain that ends in
    something that is not an address.
    """
    scope = (
        scope_or_request.scope if isinstance(scope_or_request, HTTPConnection) else scope_or_request
    )
    networks = tuple(trusted)
    client = scope.get("client")
    peer, text = _peer(str(client[0])) if client else (None, None)
    if peer is None or not _trusted(peer, networks):
        return text
    hops: list[str] = []
    for name, value in scope.get("headers", ()):
        if name.lower() == b"x-forwarded-for":  # several headers form one list, in order
            hops.extend(value.decode("latin-1").split(","))
    address = peer
    for hop in reversed(hops):
        if not hop.strip():
            continue
        parsed = parse_address(hop)
        if parsed is None:
            return None  # a trusted proxy passed on garbage: the client is unknown
        address = parsed
        if not _trusted(address, networks):
            return str(address)
    # Every hop is trusted: the left-most one is as close to the client as anyone can tell.
    return str(address)
