"""The tracking calls, Segment's API shape: each turns its arguments into message fields.

:class:`Calls` is the public call surface of :class:`~journeykit.sdk.Client`; what happens to a
message afterwards (consent gate, pseudonymization, queue, delivery) is the client's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from journeykit.consent import (
    CONSENT_EVENT,
    ConsentError,
    ConsentState,
    Purpose,
    Source,
    parse_consent_event,
    parse_purpose,
)
from journeykit.sdk._decide import DecisionCache
from journeykit.sdk._events import PLAIN_EVENTS, TrackEvent, track_fields
from journeykit.sdk._message import InvalidMessage
from journeykit.sdk._privacy import Privacy
from journeykit.sdk.protocol import MAX_NAME_CHARS

__all__ = ["Calls", "Enqueued", "queued"]


class Enqueued(NamedTuple):
    """What a tracking call did. Truthy when the event is on its way or has arrived.

    An immutable named tuple: every call returns one, so it must cost next to nothing.

    Attributes:
        queued: the event was queued for delivery; in ``sync_mode``, it was delivered.
        message_id: the event's ``messageId`` (``None`` if the call was too broken to have one).
        reason: why it was not queued or delivered: a drop reason, or ``not_sent`` when the
            client was built with ``send=False``.
        detail: a sentence for people.
        delivered: ``True`` once the collector accepted the event; only ``sync_mode`` calls
            wait to know (background delivery reports through ``stats()`` and ``on_drop``).
    """

    queued: bool
    message_id: str | None
    reason: str | None = None
    detail: str = ""
    delivered: bool = False

    def __bool__(self) -> bool:
        return self.queued


_new_tuple = tuple.__new__


def queued(message_id: str) -> Enqueued:
    """``Enqueued(True, message_id)``, without the named tuple's Python-level ``__new__``."""
    result: Enqueued = _new_tuple(Enqueued, (True, message_id, None, "", False))
    return result


class Calls:
    """track, consent, identify, page, screen, group and alias; see :class:`Client`."""

    _privacy: Privacy
    _decisions: DecisionCache

    # -- tracking calls ---------------------------------------------------------------------

    def track(
        self,
        user_id: str | None,
        event: str | TrackEvent | type[TrackEvent],
        properties: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> Enqueued:
        """Record that the user did something.

        ``event`` is a name with its ``properties`` (``track("u1", "Order Completed", {...})``),
        a typed event (``track("u1", OrderCompleted(order_id="o1"))``, no ``properties``), or
        a typed event's class with its properties as a mapping, validated here:
        ``track("u1", OrderCompleted, {"order_id": "o1"})`` raises :class:`InvalidMessage` in
        ``strict`` mode and otherwise drops the event with reason ``invalid``.
        """
        cls = type(event)
        own = False  # whether props is a new dict of this call's own, free to change
        if cls is str:  # track_fields(event, properties), for the two usual cases
            name, props = event, properties or {}
        elif properties is None and cls in PLAIN_EVENTS:
            own = True
            name = cls.event_name
            props = cls.__pydantic_serializer__.to_python(event, mode="json", exclude_none=True)
        else:
            try:
                name, props = track_fields(event, properties)
            except InvalidMessage as exc:
                mid = message_id if isinstance(message_id, str) else None
                return self._invalid(mid, str(exc), exc)
        # A choice, however it is sent, is checked and kept as consent() keeps it, or the gate
        # (which lets every consent message through) would carry an unchecked one.
        choice = name == CONSENT_EVENT
        if (
            not choice
            and anonymous_id is None
            and context is None
            and timestamp is None
            and message_id is None
            and integrations is None
        ):
            return self._track(user_id, name, props, own)  # the common case
        return self._enqueue(
            "track",
            user_id,
            anonymous_id,
            context,
            timestamp,
            message_id,
            integrations,
            {"event": name, "properties": props},
            required=("event",),
            on_built=self._record_consent if choice else None,
        )

    def consent(
        self,
        user_id: str | None,
        granted: Iterable[str | Purpose] = (),
        denied: Iterable[str | Purpose] = (),
        *,
        notice_version: str | None = None,
        source: str | Source = Source.BANNER,
        anonymous_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
        remember: bool = True,
    ) -> Enqueued:
        """Record the user's consent choices and send them as a "Consent Updated" event.

        The choice applies at once to every later call for this user id and anonymous id, and
        the event goes through even if the gate would stop others (a withdrawal must arrive).
        Purposes not named keep their earlier choice.

        Args:
            granted: purposes now granted (``analytics``, ``personalization``, ``marketing``).
            denied: purposes now denied; ``necessary`` cannot be denied.
            notice_version: the privacy notice the person saw; send it, it is the proof of
                what they were told.
            source: ``banner`` (default), ``api``, ``gpc`` or ``import``.
            remember: ``False`` sends the choice without keeping it in this client, for a
                caller that keeps it itself and answers for it through ``consent_resolver``
                (the web integrations: a choice made in one browser is that browser's cookie's,
                and must not hold for the same user's other browsers in this process alone).
        """
        try:
            purposes = _purposes(granted, denied)
        except (InvalidMessage, ConsentError) as exc:
            return self._invalid(message_id, str(exc), InvalidMessage(str(exc)))
        properties: dict[str, Any] = {
            "purposes": purposes,
            "notice_version": notice_version,
            "source": str(source),
        }
        if notice_version is None:
            del properties["notice_version"]
        result = self._enqueue(
            "track",
            user_id,
            anonymous_id,
            context,
            timestamp,
            message_id,
            None,
            {"event": CONSENT_EVENT, "properties": properties},
            on_built=self._record_consent if remember else None,
        )
        if not remember and result.reason != "invalid":
            # Kept by the caller, the choice still ends a decision cached under the old one.
            self._decisions.forget(user_id, anonymous_id)
        return result

    def consent_state(
        self, user_id: str | None, anonymous_id: str | None = None
    ) -> ConsentState | None:
        """The consent the gate would use for this subject now (``None``: nothing known)."""
        return self._privacy.consents.state(user_id, anonymous_id)

    def identify(
        self,
        user_id: str | None,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> Enqueued:
        """Record who the user is and what they are like."""
        return self._enqueue(
            "identify",
            user_id,
            anonymous_id,
            context,
            timestamp,
            message_id,
            integrations,
            {"traits": traits or {}},
        )

    def page(
        self,
        user_id: str | None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
        anonymous_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> Enqueued:
        """Record a web page view."""
        return self._view(
            "page",
            user_id,
            name,
            properties,
            category,
            anonymous_id,
            context,
            timestamp,
            message_id,
            integrations,
        )

    def screen(
        self,
        user_id: str | None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
        anonymous_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> Enqueued:
        """Record an app screen view."""
        return self._view(
            "screen",
            user_id,
            name,
            properties,
            category,
            anonymous_id,
            context,
            timestamp,
            message_id,
            integrations,
        )

    def group(
        self,
        user_id: str | None,
        group_id: str,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> Enqueued:
        """Record that the user belongs to an account, company or team."""
        return self._enqueue(
            "group",
            user_id,
            anonymous_id,
            context,
            timestamp,
            message_id,
            integrations,
            {"groupId": group_id, "traits": traits or {}},
            required=("groupId",),
        )

    def alias(
        self,
        previous_id: str,
        user_id: str,
        *,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> Enqueued:
        """Record that ``previous_id`` (often an anonymous id) is the same person as ``user_id``."""
        return self._enqueue(
            "alias",
            user_id,
            None,
            context,
            timestamp,
            message_id,
            integrations,
            {"previousId": previous_id},
            required=("previousId", "userId"),
        )

    # -- what the client provides ------------------------------------------------------------

    def _enqueue(
        self,
        type_: str,
        user_id: object,
        anonymous_id: object,
        context: Mapping[str, Any] | None,
        timestamp: datetime | None,
        message_id: object,
        integrations: Mapping[str, Any] | None,
        fields: Mapping[str, Any],
        required: tuple[str, ...] = (),
        on_built: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> Enqueued:
        raise NotImplementedError

    def _invalid(
        self, message_id: str | None, detail: str, exc: InvalidMessage | None = None
    ) -> Enqueued:
        raise NotImplementedError

    def _track(self, user_id: object, name: object, props: object, own: bool = False) -> Enqueued:
        """A track with only a user id, an event and properties: a client may fuse its path.

        ``own``: ``props`` is a new dict made by this call (a typed event's dump), which the
        path may change in place instead of copying.
        """
        return self._enqueue(
            "track",
            user_id,
            None,
            None,
            None,
            None,
            None,
            {"event": name, "properties": props},
            required=("event",),
        )

    # -- helpers ------------------------------------------------------------------------------

    def _view(
        self,
        type_: str,
        user_id: str | None,
        name: str | None,
        properties: Mapping[str, Any] | None,
        category: str | None,
        anonymous_id: str | None,
        context: Mapping[str, Any] | None,
        timestamp: datetime | None,
        message_id: str | None,
        integrations: Mapping[str, Any] | None,
    ) -> Enqueued:
        fields: dict[str, Any] = {"properties": properties or {}}
        for key, value in (("name", name), ("category", category)):
            if value is None:
                continue
            if len(str(value)) > MAX_NAME_CHARS:  # str(): a caller may pass a number
                # The collector would reject it: refused here, where the caller hears it.
                text = f"{key} is {len(str(value)):,} characters; at most {MAX_NAME_CHARS:,}"
                mid = message_id if isinstance(message_id, str) else None
                return self._invalid(mid, text, InvalidMessage(text))
            fields[key] = value
        return self._enqueue(
            type_, user_id, anonymous_id, context, timestamp, message_id, integrations, fields
        )

    def _record_consent(self, message: Mapping[str, Any]) -> None:
        # The local state is read from the event itself, exactly as the collector will read it.
        try:
            update = parse_consent_event(message)
        except ConsentError as exc:
            raise InvalidMessage(str(exc)) from exc
        if update is not None:
            self._privacy.record(update)
            # A decision cached under the old choice must not outlive it.
            self._decisions.forget(update.user_id, update.anonymous_id)


def _purposes(granted: Iterable[str | Purpose], denied: Iterable[str | Purpose]) -> dict[str, bool]:
    choices: dict[str, bool] = {}
    for names, value in ((granted, True), (denied, False)):
        for name in [names] if isinstance(names, str) else names:
            purpose = parse_purpose(name, "granted" if value else "denied").value
            if choices.get(purpose, value) != value:
                raise InvalidMessage(f"purpose {purpose!r} is both granted and denied")
            choices[purpose] = value
    if not choices:
        raise InvalidMessage("consent() needs at least one purpose granted or denied")
    return choices
