"""ISO 8601 event timestamps to whole Unix seconds, parsed once per distinct hour or second.

Profiles keep times in whole seconds (the rules' windows are hours and days), so the fraction
of a second is ignored. The collector's own form, ``"2026-03-02T09:00:00.123Z"`` (or
``+00:00``), is read by position: ``datetime.fromisoformat`` runs once per distinct hour
(``"2026-03-02T09"``), and the minutes and seconds come from a table of the 3,600 valid
``"MM:SS"``, so a distinct second costs two dict lookups, not a parse (events spread over
days rarely share a second). Other forms go to ``fromisoformat`` once per distinct second and
zone: ``"...T10:00:00.5+01:00"`` and ``"...T10:00:00.7+01:00"`` share one cache entry. A hit
still checks that what it skipped is a fraction (``.`` and ASCII digits), so a malformed string
never borrows another's value: it goes to ``fromisoformat``, which rejects it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

__all__ = ["TimeParser"]

_CACHE_LIMIT = 8_192  # distinct keys kept per cache; cleared when full (a burst spans few)
# "MM:SS" -> seconds into the hour: the lookup both validates the characters and converts them.
_MINUTE_SECOND = {f"{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(60)}
_MILLIS = frozenset(f"{n:03d}" for n in range(1000))


class TimeParser:
    """``parse(raw, now)``: the event time in whole seconds, ``now`` when absent, bad or ahead."""

    __slots__ = ("_cache", "_hours")

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" + zone of other forms -> seconds
        self._hours: dict[str, int] = {}  # "YYYY-MM-DDTHH" of the collector's form -> seconds

    def parse(self, raw: Any, now: int) -> int:
        """Whole seconds of ``raw``; ``now`` when it is missing, unreadable or later than ``now``.

        A clock ahead of ours must not keep a profile "active" into the future, hence the cap.
        """
        if type(raw) is not str:
            return now
        size = len(raw)
        if (size == 24 and raw[23] == "Z") or (size == 29 and raw[23:] == "+00:00"):
            hour = self._hours.get(raw[:13])
            if hour is None:
                hour = self._hour(raw[:13])
            if hour is not None and raw[13] == ":" and raw[19] == "." and raw[20:23] in _MILLIS:
                second = _MINUTE_SECOND.get(raw[14:19])
                if second is not None:
                    hour += second
                    return hour if hour <= now else now
        if size < 20:
            ts = self._slow(raw, None)
            return now if ts is None or ts > now else ts
        if raw[-1] == "Z":
            zone, end = "Z", size - 1
        elif raw[-6] in "+-" and raw[-3] == ":":
            zone, end = raw[-6:], size - 6
        else:
            zone, end = "", size
        key = raw[:19] + zone
        ts = self._cache.get(key)
        if ts is None or (end > 19 and not (raw[19] == "." and _digits(raw[20:end]))):
            ts = self._slow(raw, key)
            if ts is None:
                return now
        return ts if ts <= now else now

    def _hour(self, key: str) -> int | None:
        """The start of hour ``key`` (``"YYYY-MM-DDTHH"``), kept; ``None`` if it is not one.

        The shape is checked as well as ``fromisoformat``'s answer, so that the minutes and
        seconds appended later mean minutes and seconds (not, e.g., a week date's fields), and
        hour 24 (midnight of the next day to some Python versions, only at ``24:00:00``) is
        left to ``fromisoformat``.
        """
        if not (key[4] == key[7] == "-" and key[10] == "T" and key[11:13] < "24"):
            return None
        hour = self._slow(key + ":00:00Z", None)
        if hour is not None:
            if len(self._hours) >= _CACHE_LIMIT:
                self._hours.clear()
            self._hours[key] = hour
        return hour

    def _slow(self, raw: str, key: str | None) -> int | None:
        try:
            parsed = math.floor(datetime.fromisoformat(raw).timestamp())
            whole = None if key is None else math.floor(datetime.fromisoformat(key).timestamp())
        except (ValueError, OverflowError):
            return None
        if whole == parsed:  # the key alone says this second (not, e.g., a week date)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = parsed  # type: ignore[index]  # whole is None when key is
        return parsed


def _digits(text: str) -> bool:
    # str.isdigit alone accepts other scripts' digits, which fromisoformat rejects.
    return text.isdigit() and text.isascii()
