"""The consent banner's form endpoint, framework-free: check, record, redirect.

A form post with ``choice`` (``accept``, ``reject`` or ``save`` with ``purposes``) and ``next``.
A cross-site post is refused: it could otherwise set consent on somebody else's browser.
``next`` must be a path on this site, so the endpoint is no open redirect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from journeykit.sdk.integrations._cookies import banner_choice
from journeykit.sdk.integrations._tracker import RequestTracker

__all__ = ["BannerOutcome", "handle_banner", "safe_next"]


@dataclass(frozen=True, slots=True)
class BannerOutcome:
    """What to answer: ``status`` 303 with ``location``, or an error status with ``error``."""

    status: int
    location: str = "/"
    error: str = ""


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/``."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ch in value for ch in "\r\n\t\\"):
        return "/"
    return value


def handle_banner(tracker: RequestTracker, form: Mapping[str, Iterable[str]]) -> BannerOutcome:
    """Record the banner choice in ``form`` on ``tracker`` (its cookies go on the response)."""
    request = tracker.request
    if request.method != "POST":
        return BannerOutcome(405, error="use POST")
    origin = request.header("origin")
    site = request.header("sec-fetch-site")
    if (origin is not None and origin != f"{request.scheme}://{request.host}") or (
        site is not None and site not in ("same-origin", "none")
    ):
        return BannerOutcome(403, error="cross-site consent form refused")
    try:
        granted, denied = banner_choice(form)
    except ValueError as exc:
        return BannerOutcome(400, error=str(exc))
    tracker.record_consent(granted, denied)
    return BannerOutcome(303, safe_next(next(iter(form.get("next", ())), None)))
