"""The suppression list: subjects whose later events are accepted, dropped and counted.

A data-subject request ("stop tracking me", or an erasure) puts a subject on the list; from
then on every event carrying their ``userId`` or ``anonymousId`` is answered 200 and counted
as ``suppressed``, and nothing of it is stored: not the event, not its consent signals.

The list is a SQLite database, ``<data-dir>/suppression/suppressions.sqlite3``, so every
collector process on the data dir, and the ``journeykit dsr`` command, share it safely. Each
process keeps the list in memory and asks SQLite whether anything changed (``PRAGMA
data_version``, a counter read, no table scan) at most every :data:`REFRESH_SECONDS`, so a
change made anywhere is in force everywhere within that bound.

Subjects are stored as keyed pseudonyms (``hmac-sha256:<key id>:<hex>``, the ones the consent
ledger uses), never as raw ids: the list outlives the data it stops, and a leaked copy must not
name the people who asked to be forgotten. The key id in each entry keeps entries made under a
key that was later rotated out matching, as long as that key stays among the old keys.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from journeykit.collector._private_files import create_private
from journeykit.consent import FieldKind, Pseudonymizer, is_pseudonym

__all__ = [
    "MAX_REASON_CHARS",
    "MAX_SUBJECT_CHARS",
    "REFRESH_SECONDS",
    "SUBJECT_PATTERN",
    "TEXT_PATTERN",
    "InvalidSubject",
    "Suppression",
    "SuppressionList",
    "check_reason",
    "check_subject",
]

log = logging.getLogger("journeykit.collector")

REFRESH_SECONDS: Final = 0.5
"""How stale a process's copy of the list may be: a change is in force everywhere after this."""
MAX_SUBJECT_CHARS: Final = 512
MAX_REASON_CHARS: Final = 200
_FILE: Final = Path("suppression") / "suppressions.sqlite3"
_ID: Final = FieldKind.ID

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS suppressions (
    subject TEXT PRIMARY KEY,  -- hmac-sha256:<key id>:<hex>, never a raw id
    key_id TEXT NOT NULL,
    reason TEXT,
    via TEXT NOT NULL,         -- api or cli
    created_at TEXT NOT NULL   -- ISO 8601, UTC
) WITHOUT ROWID
"""


# check_subject and check_reason as regular expressions, for schemas (JSON Schema, ECMA-262 and
# Python agree on these): no control characters, and a subject is not only white space.
_NO_CONTROL: Final = r"[^\x00-\x1f\x7f-\x9f]"
SUBJECT_PATTERN: Final = rf"^{_NO_CONTROL}*[^\s\x00-\x1f\x7f-\x9f]{_NO_CONTROL}*$"
TEXT_PATTERN: Final = rf"^{_NO_CONTROL}*$"


class InvalidSubject(ValueError):
    """A subject id or reason that cannot be used; ``str(error)`` never echoes the value."""


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


def check_subject(subject: str) -> str:
    """``subject`` if it can name a subject: 1 to 512 characters, no control characters."""
    if not subject or not subject.strip():
        raise InvalidSubject("the subject is empty")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise InvalidSubject(f"the subject is longer than {MAX_SUBJECT_CHARS} characters")
    if _has_control(subject):
        raise InvalidSubject("the subject contains control characters")
    return subject


def check_reason(reason: str | None) -> str | None:
    """``reason`` if it is short plain text (it is stored; keep personal data out of it)."""
    if reason is None:
        return None
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidSubject(f"the reason is longer than {MAX_REASON_CHARS} characters")
    if _has_control(reason):
        raise InvalidSubject("the reason contains control characters")
    return reason


@dataclass(frozen=True, slots=True)
class Suppression:
    """One entry of the list; ``subject`` is a pseudonym."""

    subject: str
    key_id: str
    reason: str | None
    via: str
    created_at: str

    def as_json(self) -> dict[str, str | None]:
        return {
            "subject": self.subject,
            "keyId": self.key_id,
            "reason": self.reason,
            "via": self.via,
            "createdAt": self.created_at,
        }


def _key_id(pseudonym: str) -> str:
    return pseudonym.split(":")[1]


class SuppressionList:
    """The shared list and this process's copy of it; thread-safe."""

    def __init__(
        self, path: Path, pseudonymizer: Pseudonymizer, refresh_seconds: float = REFRESH_SECONDS
    ) -> None:
        self._pseudonymizer = pseudonymizer
        self._current_key = pseudonymizer.key_ids[0]
        self._refresh = refresh_seconds
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path)
        # One connection shared by the threads of this process, behind the lock; a 10 s busy
        # timeout rides out another process's write.
        self._db = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        self._subjects: frozenset[str] = frozenset()
        self._old_keys = False  # whether any entry was made under a key other than the current
        self._version = -1
        self._checked = 0.0
        self._reload()

    @classmethod
    def open(cls, data_dir: Path, pseudonymizer: Pseudonymizer) -> SuppressionList:
        """The list of the data dir ``data_dir``, created empty if it does not exist."""
        return cls(data_dir / _FILE, pseudonymizer)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        return len(self._subjects)

    # -- lookups on the request path ------------------------------------------------------

    def refresh(self) -> None:
        """Reload if another process changed the list; at most one check per refresh period."""
        now = time.monotonic()
        if now - self._checked < self._refresh:
            return
        # Never wait: this runs on the collector's event loop, and the lock may be held by an
        # admin change waiting for another process's write. The next request checks again.
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._checked = now
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._load(version)
        except sqlite3.Error as exc:
            # The copy in memory stays in force; the next period tries again.
            log.error("journeykit collector: cannot reload the suppression list: %s", exc)
        finally:
            self._lock.release()

    def is_suppressed(self, raw_ids: Iterable[str], pseudonyms: Iterable[str]) -> bool:
        """Whether any of a message's ids is on the list.

        Args:
            raw_ids: the message's ``userId``/``anonymousId`` values as sent, needed only when
                entries under a rotated-out key exist.
            pseudonyms: the same ids under the current key (the privacy step has them).
        """
        subjects = self._subjects
        if not subjects:
            return False
        if any(p in subjects for p in pseudonyms):
            return True
        if self._old_keys:
            for raw in raw_ids:
                if any(c in subjects for c in self._pseudonymizer.candidates(raw, _ID)):
                    return True
        return False

    # -- changes (admin API and command line) ---------------------------------------------

    def pseudonyms(self, subject: str) -> tuple[str, ...]:
        """What ``subject`` (a raw id or a pseudonym) is stored as: current key first."""
        check_subject(subject)
        if is_pseudonym(subject):
            return (subject,)
        return self._pseudonymizer.candidates(subject, _ID)

    def add(self, subject: str, reason: str | None = None, via: str = "api") -> Suppression:
        """Suppress ``subject``; a subject already on the list keeps its first entry."""
        check_reason(reason)
        pseudonym = self.pseudonyms(subject)[0]
        found = self.get(subject)
        if found is not None:
            return found
        created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        entry = Suppression(pseudonym, _key_id(pseudonym), reason, via, created)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?, ?, ?)",
                (entry.subject, entry.key_id, entry.reason, entry.via, entry.created_at),
            )
            self._load(None)
        return self.get(subject) or entry

    def remove(self, subject: str) -> bool:
        """Lift the suppression of ``subject`` under every key; whether there was one."""
        candidates = self.pseudonyms(subject)
        marks = ",".join("?" * len(candidates))
        with self._lock:
            cursor = self._db.execute(
                f"DELETE FROM suppressions WHERE subject IN ({marks})",  # noqa: S608 (only ?s)
                candidates,
            )
            self._load(None)
        return cursor.rowcount > 0

    def get(self, subject: str) -> Suppression | None:
        """The entry of ``subject`` under any known key, or ``None``."""
        candidates = self.pseudonyms(subject)
        marks = ",".join("?" * len(candidates))
        with self._lock:
            row = self._db.execute(
                f"SELECT * FROM suppressions WHERE subject IN ({marks}) LIMIT 1",  # noqa: S608
                candidates,
            ).fetchone()
        return None if row is None else Suppression(*row)

    def entries(self, limit: int = 100, after: str | None = None) -> list[Suppression]:
        """Up to ``limit`` entries in subject order, starting after the subject ``after``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM suppressions WHERE subject > ? ORDER BY subject LIMIT ?",
                (after or "", limit),
            ).fetchall()
        return [Suppression(*row) for row in rows]

    # -- the in-memory copy ---------------------------------------------------------------

    def _reload(self) -> None:
        with self._lock:
            self._load(None)

    def _load(self, version: int | None) -> None:
        # Called with the lock held. The version is read before the rows: a change landing in
        # between is then seen again at the next check rather than missed.
        if version is None:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
        rows = self._db.execute("SELECT subject, key_id FROM suppressions").fetchall()
        self._subjects = frozenset(subject for subject, _ in rows)
        self._old_keys = any(key_id != self._current_key for _, key_id in rows)
        self._version = version
