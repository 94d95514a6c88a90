"""ISO 8601 event timestamps to whole Unix seconds, parsed once per distinct second.

Profiles keep times in whole seconds (the rules' windows are hours and days), so the fraction
of a second is ignored and ``datetime.fromisoformat`` runs once per distinct second and zone:
``"2026-03-02T09:00:00.123Z"`` and ``"2026-03-02T09:00:00.456Z"`` share one cache entry. A hit
still checks that what it skipped is a fraction (``.`` and digits), so a malformed string never
borrows another's value: it goes to ``fromisoformat``, which rejects it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

__all__ = ["TimeParser"]

_CACHE_LIMIT = 8_192  # distinct seconds kept; cleared when full (a burst spans few seconds)


class TimeParser:
    """``parse(raw, now)``: the event time in whole seconds, ``now`` when absent, bad or ahead."""

    __slots__ = ("_cache", "_exact", "_hours", "_utc")

    def __init__(self) -> None:
        self._exact: dict[str, int] = {}  # whole strings of the collector's form -> seconds
        self._cache: dict[str, int] = {}
        self._utc: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" of UTC times -> seconds
        self._hours: dict[str, int] = {}  # "YYYY-MM-DDTHH" of UTC times -> seconds

    def parse(self, raw: Any, now: int) -> int:
        """Whole seconds of ``raw``; ``now`` when it is missing, unreadable or later than ``now``.

        A clock ahead of ours must not keep a profile "active" into the future, hence the cap.
        """
        if type(raw) is not str:
            return now
        ts = self._exact.get(raw)
        if ts is not None:  # most events of a request share the collector's receive time
            return ts if ts <= now else now
        size = len(raw)
        if raw[19:20] == "." and (
            (size == 24 and raw[23] == "Z") or (size == 29 and raw[23:] == "+00:00")
        ):
            # The collector's own form, "2026-03-02T09:00:00.123Z" (or "+00:00"): its fields
            # are read by position once the characters between them are checked.
            ts = self._utc.get(raw[:19])
            if ts is None or not raw[20:23].isdigit():
                ts = self._fixed(raw)
            if ts is not None:
                if len(self._exact) >= _CACHE_LIMIT:
                    self._exact.clear()
                self._exact[raw] = ts
                return ts if ts <= now else now
        if len(raw) < 20:
            ts = self._slow(raw, None)
            return now if ts is None or ts > now else ts
        if raw[-1] == "Z":
            zone, end = "Z", len(raw) - 1
        elif raw[-6] in "+-" and raw[-3] == ":":
            zone, end = raw[-6:], len(raw) - 6
        else:
            zone, end = "", len(raw)
        key = raw[:19] + zone
        ts = self._cache.get(key)
        if ts is None or (end > 19 and not (raw[19] == "." and raw[20:end].isdigit())):
            ts = self._slow(raw, key)
            if ts is None:
                return now
        return ts if ts <= now else now

    def _fixed(self, raw: str) -> int | None:
        hour = self._hours.get(raw[:13])
        if hour is None:
            hour = self._slow(raw[:13] + ":00:00Z", None)
            if hour is None:
                return None
            if len(self._hours) >= _CACHE_LIMIT:
                self._hours.clear()
            self._hours[raw[:13]] = hour
        digits = raw[14:16] + raw[17:19] + raw[20:23]
        if not (
            raw[13] == ":" == raw[16]
            and digits.isascii()
            and digits.isdigit()
            and digits[0] < "6" > digits[2]
        ):
            return None
        ts = hour + int(digits[:2]) * 60 + int(digits[2:4])
        if len(self._utc) >= _CACHE_LIMIT:
            self._utc.clear()
        self._utc[raw[:19]] = ts
        return ts

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
