"""The purposes a person can consent to, one vocabulary for SDK, collector and ledger."""

from __future__ import annotations

from enum import StrEnum

from journeykit.consent.errors import UnknownPurpose

__all__ = ["ALL_PURPOSES", "Purpose", "UnknownPurpose", "parse_purpose"]


class Purpose(StrEnum):
    """Why data is processed. docs/consent.md maps each to Consent Mode v2 and IAB TCF v2.2."""

    NECESSARY = "necessary"
    """Delivering the service the person asked for; never needs consent, cannot be denied."""
    ANALYTICS = "analytics"
    """Measuring use of the service."""
    PERSONALIZATION = "personalization"
    """Tailoring content, offers and recommendations to the person."""
    MARKETING = "marketing"
    """Advertising, and selling or sharing data with third parties for it."""


ALL_PURPOSES: tuple[Purpose, ...] = tuple(Purpose)


def parse_purpose(name: object, field: str | None = None) -> Purpose:
    """The :class:`Purpose` called ``name`` (case-insensitive, surrounding spaces ignored).

    Args:
        name: a purpose name, or a :class:`Purpose`.
        field: where ``name`` was found, named in the error if it is unknown.

    Raises:
        UnknownPurpose: ``name`` is not a purpose; the message lists the valid ones.
    """
    if isinstance(name, Purpose):
        return name
    if isinstance(name, str):
        try:
            return Purpose(name.strip().lower())
        except ValueError:
            pass
    raise UnknownPurpose(name, field)
