"""A tracker bound to one HTTP request, and how its consent reaches the SDK's gate.

Each framework adapter makes a :class:`RequestTracker` per request; it fills the ids, the page
and request context, and the consent the request carries (the consent-manager cookie and
``Sec-GPC``) into every call.

How consent reaches the gate: the client is built with ``consent_resolver=request_consent``,
and every tracker call runs inside ``_current.set(self)`` ... ``reset``. The gate runs on the
caller's thread before anything is queued (docs/sdk.md), so the resolver reads the tracker of
exactly that call. A ``ContextVar`` is per thread and per asyncio task, so concurrent requests
on threads (WSGI) or tasks (ASGI, async Django) never see each other's consent, and a tracker
used later from another thread or task still brings its own. The resolver answers only for the
tracker's own user or anonymous id: a call about somebody else falls back to what the client
itself knows (``client.consent``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from journeykit.consent import (
    ConsentState,
    ConsentUpdate,
    Purpose,
    Regime,
    Source,
    parse_purpose,
)
from journeykit.sdk._async_client import AsyncClient
from journeykit.sdk._calls import Calls, Enqueued
from journeykit.sdk._client import Client
from journeykit.sdk._decision import Decision
from journeykit.sdk.integrations._cookies import (
    CookieOp,
    category_preferences,
    encode_consent_cookie,
    read_consent,
)
from journeykit.sdk.integrations._request import RequestInfo, page_wanted
from journeykit.sdk.integrations._settings import IntegrationSettings

__all__ = ["RequestTracker", "bound", "current_tracker", "request_consent"]

_current: ContextVar[RequestTracker | None] = ContextVar("journeykit_tracker", default=None)
# Ids we made, or that look like them: anything else in the cookie is ignored, not trusted.
_ANON_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_T = TypeVar("_T")
_MILLISECOND = timedelta(milliseconds=1)  # the finest time a "Consent Updated" event carries
_MOST_SKEW = timedelta(days=1)


def current_tracker() -> RequestTracker | None:
    """The tracker of the request being handled here (this thread or task), if any."""
    return _current.get()


def request_consent(user_id: str | None, anonymous_id: str | None) -> ConsentState | None:
    """The ``consent_resolver`` for integrations: the current request's consent, for its ids."""
    tracker = _current.get()
    if tracker is None:
        return None
    if (user_id is not None and user_id == tracker.user_id) or (
        anonymous_id is not None and anonymous_id == tracker.anonymous_id
    ):
        return tracker.consent
    return None


@contextmanager
def bound(tracker: RequestTracker) -> Iterator[RequestTracker]:
    """Make ``tracker`` the current one for the ``with`` block (this thread or task only)."""
    token = _current.set(tracker)
    try:
        yield tracker
    finally:
        _current.reset(token)


class RequestTracker:
    """Tracking calls for one request, with its ids, context and consent filled in.

    Attributes:
        user_id: the signed-in user's id, or ``None``; set it when a user signs in. Stored as
            text (``42`` becomes ``"42"``), as the client sends it.
        anonymous_id: the device's id: the cookie's, else a new one, stored only with consent.
        consent: the consent in force (cookie, then ``Sec-GPC``), ``None`` if none is known.
        gpc: the request carried ``Sec-GPC: 1``.
        consent_cookie_error: why the consent cookie was ignored, if it was.
    """

    def __init__(
        self,
        client: Calls,
        settings: IntegrationSettings,
        request: RequestInfo,
        user_id: object = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self.request = request
        self._cookies: dict[str, CookieOp] = {}
        self._page_tracked = False
        header = settings.user_id_header
        self.user_id = (request.header(header) if header else None) or user_id
        read = read_consent(settings, request.cookies, request.headers, datetime.now(UTC))
        self.consent = read.state
        self.gpc = read.gpc
        self.consent_cookie_error = read.cookie_error
        self._has_choice = read.from_cookie
        self.anonymous_id, self._anon_stored = self._initial_anonymous_id()
        self._sync_anonymous_cookie()

    @property
    def user_id(self) -> str | None:
        return self._user_id

    @user_id.setter
    def user_id(self, value: object) -> None:
        # An integer primary key (``user.id``) must be the same user as the "42" the client
        # sends, or the consent lookup for calls without an anonymous id finds nobody.
        self._user_id = None if value is None or value == "" else str(value)

    # -- consent --------------------------------------------------------------------------------

    def allows(self, purpose: str | Purpose) -> bool:
        """Whether the consent in force (or the regime, if none) grants ``purpose``."""
        wanted = parse_purpose(purpose)
        if self.consent is None:
            return wanted is Purpose.NECESSARY or self._settings.consent_regime is Regime.OPT_OUT
        return self.consent.is_granted(wanted)

    @property
    def needs_banner(self) -> bool:
        """No choice is on record for this browser: show the consent banner."""
        return not self._has_choice

    def record_consent(
        self,
        granted: Iterable[str | Purpose] = (),
        denied: Iterable[str | Purpose] = (),
        *,
        notice_version: str | None = None,
        source: str | Source = Source.BANNER,
    ) -> Enqueued:
        """Record a banner (or settings page) choice: send it, and store it in the cookies.

        Sends the "Consent Updated" event, applies the choice to the rest of this request,
        writes our consent cookie (other formats belong to their consent manager), and sets or
        deletes the anonymous id cookie to match. With ``Sec-GPC: 1``, marketing is recorded
        as denied whatever the form said.

        Raises:
            journeykit.consent.UnknownPurpose: a purpose name is not one.
        """
        yes = {parse_purpose(p, "granted") for p in granted}
        no = {parse_purpose(p, "denied") for p in denied} - {Purpose.NECESSARY}
        if self.gpc and Purpose.MARKETING in yes:
            yes.discard(Purpose.MARKETING)
            no.add(Purpose.MARKETING)
        yes -= {Purpose.NECESSARY}
        notice = notice_version or self._settings.notice_version
        now = self._choice_time()
        result = self._call(
            self._client.consent,
            self.user_id,
            sorted(yes),
            sorted(no),
            notice_version=notice,
            source=source,
            anonymous_id=self.anonymous_id,
            timestamp=now,
            remember=False,  # the cookie keeps it, for this browser only
        )
        # The person chose: the choice holds even if its event could not be queued (that drop
        # is counted by the client); only an invalid call leaves everything as it was.
        if result or result.reason != "invalid":
            purposes = {**dict.fromkeys(yes, True), **dict.fromkeys(no, False)}
            update = ConsentUpdate(
                purposes=purposes, source=Source(source), timestamp=now, notice_version=notice
            )
            base = self.consent or ConsentState(regime=self._settings.consent_regime)
            self.consent = base.merge(update)
            self._has_choice = True
            if self._settings.consent_cookie_format == "journeykit":
                self._set_cookie(
                    self._settings.consent_cookie,
                    encode_consent_cookie(self.consent),
                    self._settings.consent_max_age,
                )
            self._sync_anonymous_cookie()
        return result

    def _choice_time(self) -> datetime:
        """Now, or just after the choice in the cookie if another server's clock wrote it later.

        A click is the person's latest word: merged by time, it would lose against a cookie
        written by an app server whose clock runs ahead, here and at the collector alike. A
        cookie more than a day ahead is no clock's error; its choice is dropped instead.
        """
        now = datetime.now(UTC)
        before = self.consent.timestamp if self.consent is not None else None
        if before is None or before < now:
            return now
        if before - now > _MOST_SKEW:
            self.consent = None  # the click's purposes start afresh, on the regime's defaults
            return now
        return before + _MILLISECOND

    def reset(self) -> None:
        """Sign out: forget the user and give this browser a new anonymous id.

        What analytics.js's ``reset()`` does; call it when a user signs out. Without it, the
        next person on the same browser (a family computer, a shop's kiosk) carries on with the
        last one's anonymous id, and the collector keeps an anonymous id with the first user it
        was linked to (docs/decisions.md, "Shared devices"): their anonymous browsing would
        count for the previous person. The consent choice stays, as it belongs to the browser
        (the banner's cookie), not to a user. An anonymous id from ``anonymous_id_header`` is
        the proxy's to renew, and is kept.
        """
        self.user_id = None
        header = self._settings.anonymous_id_header
        if header and self.request.header(header):
            return
        self.anonymous_id = uuid.uuid4().hex
        self._anon_stored = False
        self._sync_anonymous_cookie()  # the new id is stored only if consent allows it

    # -- tracking calls -------------------------------------------------------------------------

    def track(self, event: Any, properties: Mapping[str, Any] | None = None, **kw: Any) -> Enqueued:
        """``client.track`` for this request's person; ``event`` as in the client."""
        return self._send(self._client.track, event, properties, **kw)

    def page(
        self, name: str | None = None, properties: Mapping[str, Any] | None = None, **kw: Any
    ) -> Enqueued:
        """A page view of this request's page (its path, url and referrer as properties)."""
        props = {**self.request.page(self._settings), **(properties or {})}
        self._page_tracked = True
        return self._send(self._client.page, name, props, **kw)

    def identify(self, traits: Mapping[str, Any] | None = None, **kw: Any) -> Enqueued:
        """``client.identify``; traits are only what you pass (nothing is added)."""
        return self._send(self._client.identify, traits, **kw)

    def group(self, group_id: str, traits: Mapping[str, Any] | None = None, **kw: Any) -> Enqueued:
        """``client.group`` for this request's person."""
        return self._send(self._client.group, group_id, traits, **kw)

    def alias(self, previous_id: str | None = None, **kw: Any) -> Enqueued:
        """Link ``previous_id`` (by default this device's anonymous id) to :attr:`user_id`."""
        kw["context"] = self._context(kw.get("context"))
        return self._call(
            self._client.alias, previous_id or self.anonymous_id, self.user_id or "", **kw
        )

    def decisions(self) -> Decision | None:
        """The person's personalization decision, or ``None`` without consent for it.

        Segments, next best action and recommendations, from ``client.decide`` (cached for a
        few seconds there); ``None`` also when the collector has no answer
        (``unavailable``) or nothing is known of the visitor yet, so templates test one thing.
        """
        subject = self._decision_subject()
        if subject is None:
            return None
        client = self._client
        if not isinstance(client, Client):
            raise TypeError("with an AsyncClient, use `await tracker.adecisions()`")
        decision: Decision = self._call(client.decide, subject)
        return decision if decision.personalization == "granted" else None

    async def adecisions(self) -> Decision | None:
        """:meth:`decisions` for an app whose client is an ``AsyncClient``."""
        subject = self._decision_subject()
        if subject is None:
            return None
        client = self._client
        if not isinstance(client, AsyncClient):
            return self.decisions()
        with bound(self):
            decision = await client.decide(subject)
        return decision if decision.personalization == "granted" else None

    def _decision_subject(self) -> str | None:
        if not self.allows(Purpose.PERSONALIZATION):
            return None
        return self.user_id or self.anonymous_id or None

    # -- for the framework adapters -------------------------------------------------------------

    def after_response(self, status: int, content_type: str | None) -> None:
        """Automatic page view for a successful HTML GET, unless the view already sent one."""
        settings = self._settings
        if (
            settings.page_views
            and not self._page_tracked
            and self.request.method == "GET"
            and 200 <= status < 300
            and (content_type or "").startswith("text/html")
            and page_wanted(settings, self.request.path)
        ):
            self.page()

    def cookie_ops(self) -> list[CookieOp]:
        """The cookies to set or delete on the response."""
        return list(self._cookies.values())

    # -- internals ------------------------------------------------------------------------------

    def _call(self, method: Callable[..., _T], *args: Any, **kw: Any) -> _T:
        with bound(self):
            return method(*args, **kw)

    def _send(self, method: Callable[..., Enqueued], *args: Any, **kw: Any) -> Enqueued:
        kw["context"] = self._context(kw.get("context"))
        kw.setdefault("anonymous_id", self.anonymous_id)
        return self._call(method, self.user_id, *args, **kw)

    def _context(self, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        settings, request = self._settings, self.request
        context: dict[str, Any] = {"page": request.page(settings)}
        agent = request.header("user-agent")
        if settings.include_user_agent and agent:
            context["userAgent"] = agent
        ip = request.client_ip(settings)
        if settings.include_ip and ip:
            context["ip"] = ip
        if settings.send_consent_context and self.consent is not None and self.consent.purposes:
            # Segment's shape, so the collector records (and enforces) the same consent.
            context["consent"] = {"categoryPreferences": category_preferences(self.consent)}
        if extra:
            context.update(extra)
        return context

    def _initial_anonymous_id(self) -> tuple[str, bool]:
        header = self._settings.anonymous_id_header
        if header:
            value = self.request.header(header)
            if value and _ANON_ID.fullmatch(value):
                return value, True  # the proxy owns it: never set or deleted here
        value = self.request.cookies.get(self._settings.anonymous_id_cookie, "")
        if _ANON_ID.fullmatch(value):
            return value, True
        return uuid.uuid4().hex, False

    def _sync_anonymous_cookie(self) -> None:
        settings = self._settings
        if settings.anonymous_id_header and self.request.header(settings.anonymous_id_header):
            return
        allowed = self.allows(settings.anonymous_id_purpose)
        if allowed and not self._anon_stored:
            self._set_cookie(
                settings.anonymous_id_cookie, self.anonymous_id, settings.anonymous_id_max_age
            )
            self._anon_stored = True
        elif not allowed and self._anon_stored:
            self._set_cookie(settings.anonymous_id_cookie, None, 0)
            self._anon_stored = False

    def _set_cookie(self, name: str, value: str | None, max_age: int) -> None:
        self._cookies[name] = CookieOp.make(self._settings, name, value, max_age)
