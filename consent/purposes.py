"""The purposes a person can consent to, one vocabulary for SDK, collector and ledger."""

from __future__ import annotations

from enum import StrEnum

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


class UnknownPurpose(ValueError):
    """A purpose name that is not one of :data:`ALL_PURPOSES`."""

    def __init__(self, name: object) -> None:
        valid = ", ".join(p.value for p in Purpose)
        super().__init__(f"unknown purpose {name!r}; valid purposes are: {valid}")
        self.name = name


def parse_purpose(name: object) -> Purpose:
    """The :class:`Purpose` called ``name`` (case-insensitive), or :class:`UnknownPurpose`."""
    if isinstance(name, Purpose):
        return name
    if isinstance(name, str):
        try:
            return Purpose(name.strip().lower())
        except ValueError:
            pass
    raise UnknownPurpose(name)
