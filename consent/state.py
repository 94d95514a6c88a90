"""One subject's consent: granted, denied or unset per purpose, and how it changes.

A :class:`ConsentUpdate` is one signal (a banner click, an API call, a ``Sec-GPC`` header, an
import); :meth:`ConsentState.merge` folds it into the subject's :class:`ConsentState`. Both are
immutable: merging returns a new state.

Merge rule, per purpose: the choice with the later timestamp wins. On a tie (same instant), a
denial beats a grant, because when two signals cannot be ordered the privacy-protective reading
is the only defensible one; it also makes merging order-independent. A tie between equal choices
keeps the existing entry.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer, field_validator

from journeykit.consent.purposes import ALL_PURPOSES, Purpose

__all__ = ["Choice", "ConsentState", "ConsentUpdate", "PurposeConsent", "Regime", "Source"]


class Regime(StrEnum):
    """How a purpose nobody has answered for (unset) is read."""

    OPT_IN = "opt_in"
    """GDPR and ePrivacy: unset means denied. The default."""
    OPT_OUT = "opt_out"
    """CCPA/CPRA: unset means granted, until the person opts out (or sends ``Sec-GPC: 1``)."""


class Source(StrEnum):
    """Where a consent signal came from."""

    BANNER = "banner"
    """A consent banner or consent-management platform (Segment, RudderStack payloads)."""
    API = "api"
    """An explicit call by the site or app, e.g. a "Consent Updated" event or a settings page."""
    GPC = "gpc"
    """The browser's Global Privacy Control header, ``Sec-GPC: 1``."""
    IMPORT = "import"
    """A bulk import of consent collected elsewhere."""


class Choice(StrEnum):
    """What a state says about one purpose, before the regime resolves ``unset``."""

    GRANTED = "granted"
    DENIED = "denied"
    UNSET = "unset"


_FROZEN = ConfigDict(frozen=True, extra="forbid")


class ConsentUpdate(BaseModel):
    """One consent signal, in the same shape whatever it was parsed from.

    Attributes:
        purposes: the purposes this signal speaks about, ``True`` for granted. Purposes it does
            not mention are left as they were. ``necessary`` is never stored (always granted).
        source: where the signal came from.
        timestamp: when the person made the choice (timezone-aware).
        notice_version: the version of the notice shown to the person, if known.
        user_id: the ``userId`` of the message it came in, if any.
        anonymous_id: the ``anonymousId`` of the message it came in, if any.
        ignored: dotted paths of input fields that were not understood (unmapped categories),
            reported so that a misconfigured mapping is visible rather than silent.
    """

    model_config = _FROZEN

    purposes: Mapping[Purpose, bool]
    source: Source
    timestamp: AwareDatetime
    notice_version: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    ignored: tuple[str, ...] = ()

    @field_validator("purposes")
    @classmethod
    def _readonly_purposes(cls, value: Mapping[Purpose, bool]) -> Mapping[Purpose, bool]:
        return MappingProxyType(dict(value))

    @field_serializer("purposes")
    def _dump_purposes(self, value: Mapping[Purpose, bool]) -> dict[str, bool]:
        return {p.value: granted for p, granted in value.items()}


class PurposeConsent(BaseModel):
    """The current choice for one purpose, and the signal it came from."""

    model_config = _FROZEN

    granted: bool
    timestamp: AwareDatetime
    source: Source
    notice_version: str | None = None


class ConsentState(BaseModel):
    """A subject's consent, per purpose.

    Attributes:
        purposes: explicit choices; a purpose missing here is unset.
        regime: how unset purposes are read (:class:`Regime`). It belongs to the subject, so one
            deployment can hold EU subjects under opt-in and Californians under opt-out.
        timestamp: time of the latest signal merged in; ``None`` for a state with no signal.
        source: source of that latest signal.
        notice_version: notice version of that latest signal.
    """

    model_config = _FROZEN

    purposes: Mapping[Purpose, PurposeConsent] = Field(default_factory=lambda: MappingProxyType({}))
    regime: Regime = Regime.OPT_IN
    timestamp: AwareDatetime | None = None
    source: Source | None = None
    notice_version: str | None = None

    @field_validator("purposes")
    @classmethod
    def _readonly_purposes(
        cls, value: Mapping[Purpose, PurposeConsent]
    ) -> Mapping[Purpose, PurposeConsent]:
        return MappingProxyType(dict(value))

    @field_serializer("purposes")
    def _dump_purposes(self, value: Mapping[Purpose, PurposeConsent]) -> dict[str, Any]:
        return {p.value: c.model_dump() for p, c in value.items()}

    @classmethod
    def from_update(cls, update: ConsentUpdate, regime: Regime = Regime.OPT_IN) -> ConsentState:
        """A new subject's state: an empty state of ``regime`` with ``update`` merged in."""
        return _EMPTY[regime].merge(update)  # empty states are all alike: made once

    def choice(self, purpose: Purpose) -> Choice:
        """The explicit choice for ``purpose``; ``necessary`` is always granted."""
        if purpose is Purpose.NECESSARY:
            return Choice.GRANTED
        entry = self.purposes.get(purpose)
        if entry is None:
            return Choice.UNSET
        return Choice.GRANTED if entry.granted else Choice.DENIED

    def is_granted(self, purpose: Purpose) -> bool:
        """Whether data may be processed for ``purpose``, with unset read by the regime."""
        if purpose is _NECESSARY:
            return True
        entry = self.purposes.get(purpose)
        if entry is None:
            return self.regime is _OPT_OUT
        return entry.granted

    def granted(self) -> frozenset[Purpose]:
        """Every purpose :meth:`is_granted` answers ``True`` for, ``necessary`` included.

        Worked out once per state: the gate reads it for every message. The cached set is kept
        with the fields it was computed from, so a copy with another regime or other purposes
        (``model_copy(update=...)`` copies the cache too) computes its own.
        """
        cached = self.__dict__.get("_granted_cache")
        if cached is not None and cached[0] is self.purposes and cached[1] is self.regime:
            found: frozenset[Purpose] = cached[2]
            return found
        purposes, unset = self.purposes, self.regime is _OPT_OUT
        # is_granted for each purpose, inlined; the set of each answer is made once.
        found = _GRANTED[
            tuple([unset if (e := purposes.get(p)) is None else e.granted for p in _CONSENTABLE])
        ]
        # Straight into __dict__ (as functools.cached_property does): the model is frozen, and
        # pydantic's equality, dumps and schema see only declared fields.
        self.__dict__["_granted_cache"] = (self.purposes, self.regime, found)
        return found

    def merge(self, update: ConsentUpdate) -> ConsentState:
        """Return the state with ``update`` folded in (see the module docstring for the rule)."""
        merged = dict(self.purposes)
        changed = False
        for purpose, granted in update.purposes.items():
            if purpose is Purpose.NECESSARY:
                continue
            current = merged.get(purpose)
            if current is None or _newer(update.timestamp, granted, current):
                merged[purpose] = PurposeConsent(
                    granted=granted,
                    timestamp=update.timestamp,
                    source=update.source,
                    notice_version=update.notice_version,
                )
                changed = True
        latest = self.timestamp is None or update.timestamp >= self.timestamp
        if not changed and not latest:
            return self
        return ConsentState(
            purposes=merged,
            regime=self.regime,
            timestamp=update.timestamp if latest else self.timestamp,
            source=update.source if latest else self.source,
            notice_version=update.notice_version if latest else self.notice_version,
        )

    def absorbs(self, update: ConsentUpdate) -> bool:
        """Whether merging ``update`` would change nothing: ``merge`` gives this state's values.

        True when, for every purpose ``update`` speaks about, this state's entry is
        newer, or as old and a denial (the merge rule keeps it), and this state's latest
        signal is newer than ``update``, or the same instant in the same time zone with the
        same source and notice version (then the merge copies them over unchanged). A merge
        is idempotent: a state that ``update`` was merged into absorbs it.
        """
        timestamp = update.timestamp
        mine = self.timestamp
        if mine is None or mine < timestamp:
            return False
        if mine == timestamp and (
            mine.tzinfo != timestamp.tzinfo
            or self.source is not update.source
            or self.notice_version != update.notice_version
        ):
            return False
        purposes = self.purposes
        for purpose, granted in update.purposes.items():
            current = purposes.get(purpose)
            if current is None:
                if purpose is _NECESSARY:  # never stored, never merged
                    continue
                return False
            at = current.timestamp  # _newer(timestamp, granted, current), inlined
            if at < timestamp or (at == timestamp and current.granted and not granted):
                return False
        return True


# Enum member lookups through the class cost ~100 ns on Python 3.11; the gate calls is_granted
# on every message, so it compares against module constants instead.
_NECESSARY = Purpose.NECESSARY
_OPT_OUT = Regime.OPT_OUT


_EMPTY: Final = {regime: ConsentState(regime=regime) for regime in Regime}
_CONSENTABLE: Final = tuple(p for p in ALL_PURPOSES if p is not _NECESSARY)
_GRANTED: Final = {
    flags: frozenset([_NECESSARY, *(p for p, on in zip(_CONSENTABLE, flags, strict=True) if on)])
    for flags in itertools.product((False, True), repeat=len(_CONSENTABLE))
}
"""The granted set of each combination of answers for the purposes that are not necessary."""


def _newer(timestamp: datetime, granted: bool, current: PurposeConsent) -> bool:
    if timestamp != current.timestamp:
        return timestamp > current.timestamp
    return current.granted and not granted
