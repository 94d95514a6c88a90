"""The client address: the peer, or X-Forwarded-For read from the right past trusted proxies."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from starlette.requests import Request

from journeykit.collector.client_ip import client_ip, parse_address

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def scope(peer: str | None, *forwarded: str) -> dict[str, Any]:
    return {
        "type": "http",
        "client": None if peer is None else (peer, 50_000),
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # An untrusted peer: the header is the client's own claim and is ignored.
        ("203.0.113.9", ("198.51.100.1",), "203.0.113.9"),
        # A trusted proxy: the right-most address that is not a proxy.
        ("10.0.0.2", ("198.51.100.1",), "198.51.100.1"),
        ("10.0.0.2", ("1.1.1.1, 198.51.100.1, 10.0.0.7",), "198.51.100.1"),
        # Several headers form one list, in order.
        ("10.0.0.2", ("1.1.1.1", "198.51.100.1, 10.0.0.7"), "198.51.100.1"),
        # Everything trusted: the left-most is the best anyone can tell.
        ("10.0.0.2", ("10.1.1.1, 10.0.0.7",), "10.1.1.1"),
        # A trusted proxy without the header: the proxy itself.
        ("10.0.0.2", (), "10.0.0.2"),
        # Ports, brackets and IPv6.
        ("10.0.0.2", ("198.51.100.1:4711",), "198.51.100.1"),
        ("fd00::1", ("[2001:db8::5]:443",), "2001:db8::5"),
        ("fd00::1", ("2001:db8::5, fd12::9",), "2001:db8::5"),
        # A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d.
        ("::ffff:10.0.0.2", ("198.51.100.1",), "198.51.100.1"),
        # A trusted chain that ends in garbage: unknown, not the garbage.
        ("10.0.0.2", ("198.51.100.1, unknown",), None),
        # Garbage left of the client's real address is never reached.
        ("10.0.0.2", ("junk, 198.51.100.1",), "198.51.100.1"),
        (None, ("198.51.100.1",), None),
    ],
)
def test_client_ip(peer: str | None, forwarded: tuple[str, ...], expected: str | None) -> None:
    assert client_ip(scope(peer, *forwarded), TRUSTED) == expected


def test_no_trusted_proxies_means_the_header_is_ignored() -> None:
    assert client_ip(scope("10.0.0.2", "198.51.100.1"), ()) == "10.0.0.2"


def test_takes_a_request_too() -> None:
    request = Request(scope("10.0.0.2", "198.51.100.1"))
    assert client_ip(request, TRUSTED) == "198.51.100.1"


def test_parse_address() -> None:
    assert str(parse_address(' "[::1]:80" ')) == "::1"
    assert parse_address("[::1") is None
    assert parse_address("") is None
