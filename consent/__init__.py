"""journeykit's privacy core: purposes, consent state and gate, pseudonymization, ledger.

Shared by the SDK and the collector; imports nothing else of journeykit.
"""

from journeykit.consent.purposes import ALL_PURPOSES, Purpose, UnknownPurpose, parse_purpose

__all__ = ["ALL_PURPOSES", "Purpose", "UnknownPurpose", "parse_purpose"]
