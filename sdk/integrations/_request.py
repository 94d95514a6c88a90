"""The facts of one HTTP request that a tracker needs, gathered by each framework's adapter."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from journeykit.sdk.integrations._settings import IntegrationSettings

__all__ = ["RequestInfo", "page_wanted"]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """One request, framework-free.

    Attributes:
        method: the HTTP method, upper case.
        scheme: ``http`` or ``https``.
        host: the ``Host`` the client asked for (with the port, if any).
        path: the URL path, decoded.
        query_string: the raw query string, without ``?``.
        headers: (name, value) pairs, names in lower case.
        cookies: the request's cookies by name.
        remote_addr: the peer address the server saw, if known.
    """

    method: str
    scheme: str
    host: str
    path: str
    query_string: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    cookies: Mapping[str, str] = field(default_factory=dict)
    remote_addr: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or ``None``."""
        wanted = name.lower()
        return next((v for n, v in self.headers if n == wanted), None)

    def client_ip(self, settings: IntegrationSettings) -> str | None:
        """The client's address: the peer's, or the one your proxies saw when trusted.

        Each proxy appends the address it received from on the right of ``X-Forwarded-For``;
        everything left of what your own proxies appended was written by the client, who can
        write anything there. Several headers are one list, in order.
        """
        if settings.trust_forwarded_for:
            entries = [
                e.strip() for n, v in self.headers if n == "x-forwarded-for" for e in v.split(",")
            ]
            if len(entries) >= settings.forwarded_hops:
                return entries[-settings.forwarded_hops] or self.remote_addr
        return self.remote_addr

    def page(self, settings: IntegrationSettings) -> dict[str, Any]:
        """Segment's ``context.page``: url, path, referrer, and search only if allowed."""
        page: dict[str, Any] = {"path": self.path, "url": f"{self.scheme}://{self.host}{self.path}"}
        if settings.include_query_string and self.query_string:
            page["search"] = "?" + self.query_string
            page["url"] += page["search"]
        referrer = self.header("referer")
        if referrer:
            # A referrer's query string is as likely to hold personal data as our own.
            page["referrer"] = referrer if settings.include_query_string else referrer.split("?")[0]
        return page


def cookie_pairs(headers: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """``(name, value)`` of every cookie in the ``Cookie`` headers, in the order sent."""
    for header, line in headers:
        if header == "cookie":
            for part in line.split(";"):
                key, sep, value = part.strip().partition("=")
                if sep:
                    yield key, value.strip('"')


def page_wanted(settings: IntegrationSettings, path: str) -> bool:
    """Whether automatic page tracking covers ``path`` (include globs, then exclude globs)."""
    included = settings.page_include
    if included and not any(fnmatch.fnmatchcase(path, g) for g in included):
        return False
    return not any(fnmatch.fnmatchcase(path, g) for g in settings.page_exclude)
