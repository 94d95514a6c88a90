"""What happens to a message between the call and the queue: the consent gate, then
pseudonymization. Nothing a subject did not consent to, and no personal field in clear, is
ever queued, so nothing of it can leave the process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from journeykit.consent import (
    Action,
    ConsentUpdate,
    FieldKind,
    HashMode,
    Pseudonymizer,
    PseudonymKey,
    PseudonymKeyError,
    pseudonymize_message,
)
from journeykit.sdk import _ids
from journeykit.sdk._consent import ConsentBook, ConsentResolver
from journeykit.sdk._settings import ClientSettings

__all__ = ["Privacy", "Verdict"]

log = logging.getLogger("journeykit")

_DROP, _STRIP = Action.DROP, Action.STRIP

_DETAILS = {
    "no_consent": "no consent is known for this subject, and the regime is opt-in",
    "consent_error": "the consent_resolver raised (logged); no event is sent without consent",
}


class Verdict(NamedTuple):
    """What to queue, or why not.

    Attributes:
        message: the message to queue (possibly stripped and pseudonymized); ``None`` to drop.
        reason: the gate's reason code (a drop reason when ``message`` is ``None``).
        detail: a sentence for people, for drops.
        removed: reason codes of fields removed from a message still sent, one per field.
    """

    message: Mapping[str, Any] | None
    reason: str
    detail: str = ""
    removed: tuple[str, ...] = ()


class Privacy:
    """The consent gate and pseudonymization, as configured for one client.

    Raises:
        PseudonymKeyError: pseudonymization is on, the rules need a key, and none was given
            (``pseudonymizer``, ``pseudonym_key``) or found in the environment.
    """

    def __init__(
        self,
        settings: ClientSettings,
        resolver: ConsentResolver | None = None,
        pseudonymizer: Pseudonymizer | None = None,
    ) -> None:
        self.consents = ConsentBook(settings.policy, settings.max_consent_subjects, resolver)
        self._rules = settings.pseudonym_rules
        self._pseudonymize = settings.pseudonymize
        self._pseudonymizer = _pseudonymizer(settings, pseudonymizer)

    def after_fork(self) -> None:
        """In a forked child: reset the locks a thread of the parent may have held.

        Also forgets the parent's unused message ids, for forks that skip the at-fork hooks
        (the client calls this when it sees a new pid).
        """
        self.consents.after_fork()
        _ids.reset()

    def record(self, update: ConsentUpdate) -> None:
        """Remember a consent change for the messages that follow."""
        self.consents.record(update)

    def apply(self, message: Mapping[str, Any]) -> Verdict:
        """Gate ``message``, then pseudonymize what may be sent; never mutates ``message``."""
        decision = self.consents.decide(message)
        if decision.action is _DROP or decision.message is None:
            reason = decision.reason
            detail = _DETAILS.get(reason) or f"{reason.partition(':')[2]} is not granted"
            return Verdict(None, reason, detail)
        out = decision.message
        removed: tuple[str, ...] = ()
        if decision.action is _STRIP:
            removed = (decision.reason,) * len(decision.stripped)
        if self._pseudonymize:
            result = pseudonymize_message(out, self._rules, self._pseudonymizer)
            out = result.message
            if result.removed:
                for path, why in result.removed:
                    log.warning(
                        "journeykit: removed %s from event %s (%s): it cannot be pseudonymized",
                        path,
                        out.get("messageId"),
                        why,
                    )
                removed += tuple(why for _, why in result.removed)
        return Verdict(out, decision.reason, "", removed)


def _pseudonymizer(settings: ClientSettings, given: Pseudonymizer | None) -> Pseudonymizer | None:
    if not settings.pseudonymize:
        if given is not None:
            raise ValueError("a pseudonymizer was given, but pseudonymize=False")
        return None
    if given is not None:
        if settings.pseudonym_key is not None:
            raise ValueError("give a pseudonymizer or a pseudonym_key, not both")
        return given
    if settings.pseudonym_key is not None:
        return Pseudonymizer([PseudonymKey(key_id="k1", secret=settings.pseudonym_key)])
    rules = settings.pseudonym_rules.fields
    if all(r.kind is FieldKind.IP or r.mode is HashMode.SHA256 for r in rules):
        return None  # nothing to key: IP truncation and plain hashes only
    try:
        return Pseudonymizer.from_env()
    except PseudonymKeyError as exc:
        raise PseudonymKeyError(
            f"{exc}. The SDK pseudonymizes emails and phone numbers before they are queued: "
            "pass pseudonym_key=... or pseudonymizer=..., or pseudonymize=False to send them "
            "as they are"
        ) from None
