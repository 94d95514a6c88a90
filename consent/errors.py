"""The errors this package raises, one tree under :class:`ConsentError`.

Every error a caller can provoke with bad input (a malformed consent payload, an unknown purpose,
a weak key, a value that cannot be normalised) is a :class:`ConsentError`, so one ``except``
catches them all, and each is also a :class:`ValueError` for code that already expects one::

    ValueError
     ├── ConsentError                  base of everything below
     │    ├── UnknownPurpose           a purpose name that is not one of ALL_PURPOSES
     │    ├── InvalidConsentSignal     a consent payload of the wrong shape; names the field
     │    ├── InvalidFieldValue        a value to pseudonymize that cannot be normalised
     │    └── PseudonymKeyError        a missing, short, well-known or unreadable HMAC key
     └── pydantic.ValidationError      a configuration model (GatePolicy, FieldRule, ...)
                                       given the wrong shape; pydantic names the field

No message ever contains a key's secret.
"""

from __future__ import annotations

__all__ = [
    "ConsentError",
    "InvalidConsentSignal",
    "InvalidFieldValue",
    "PseudonymKeyError",
    "UnknownPurpose",
]


class ConsentError(ValueError):
    """Base of every error raised by :mod:`journeykit.consent` on bad input."""


class UnknownPurpose(ConsentError):
    """A purpose name that is not one of :data:`~journeykit.consent.ALL_PURPOSES`.

    Args:
        name: the name that was given.
        field: where it was found (a dotted path), if it came from a payload.
    """

    def __init__(self, name: object, field: str | None = None) -> None:
        # Imported here: purposes.py imports this module, so a top-level import would be a cycle.
        from journeykit.consent.purposes import Purpose

        valid = ", ".join(p.value for p in Purpose)
        prefix = f"{field}: " if field else ""
        super().__init__(f"{prefix}unknown purpose {name!r}; valid purposes are: {valid}")
        self.name = name
        self.field = field


class InvalidConsentSignal(ConsentError):
    """A consent payload whose shape is wrong.

    The message reads ``<field>: <reason>``, e.g.
    ``context.consent.categoryPreferences.Analytics: expected a boolean, got 'yes'``.

    Args:
        field: dotted path of the offending field in the message.
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidFieldValue(ConsentError):
    """A value that cannot be normalised for its kind (a phone with letters, an invalid IP).

    Args:
        kind: the field kind (``phone``, ``ip``, ...).
        reason: a short stable code, also used when the field is removed (e.g. ``invalid_ip``).
        detail: a sentence for people; never contains the value itself, which is personal data.
    """

    def __init__(self, kind: str, reason: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail} ({reason})")
        self.kind = kind
        self.reason = reason


class PseudonymKeyError(ConsentError):
    """A pseudonymization key that is missing, too short, a well-known default or unreadable."""
