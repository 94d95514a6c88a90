"""What a request says about its client, framework-free."""

from __future__ import annotations

import pytest

from journeykit.sdk.integrations import IntegrationSettings, RequestInfo


def request(*forwarded: str) -> RequestInfo:
    headers = tuple(("x-forwarded-for", value) for value in forwarded)
    return RequestInfo("GET", "https", "s.test", "/", headers=headers, remote_addr="10.0.0.9")


@pytest.mark.parametrize(
    ("forwarded", "hops", "address"),
    [
        # The client wrote "203.0.113.5"; your proxy appended the address it saw.
        (("203.0.113.5, 198.51.100.7",), 1, "198.51.100.7"),
        (("198.51.100.7",), 1, "198.51.100.7"),
        # A CDN then your load balancer: the CDN saw the client, the balancer saw the CDN.
        (("203.0.113.5, 198.51.100.7, 192.0.2.1",), 2, "198.51.100.7"),
        (("203.0.113.5", "198.51.100.7, 192.0.2.1"), 2, "198.51.100.7"),  # split headers
        (("198.51.100.7",), 2, "10.0.0.9"),  # fewer entries than proxies: not through them all
        ((), 1, "10.0.0.9"),
    ],
)
def test_the_address_is_the_one_your_proxies_saw(
    forwarded: tuple[str, ...], hops: int, address: str
) -> None:
    settings = IntegrationSettings(trust_forwarded_for=True, forwarded_hops=hops)
    assert request(*forwarded).client_ip(settings) == address


def test_forwarded_for_is_ignored_unless_trusted() -> None:
    assert request("198.51.100.7").client_ip(IntegrationSettings()) == "10.0.0.9"
