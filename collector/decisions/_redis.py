"""The shared profile store on Redis: several collector processes or hosts, one state.

An update costs a constant number of round trips whatever the batch size: ``WATCH`` + ``MGET``
of the batch's subjects (again only to follow an alias that points outside the batch), then one
``MULTI``/``EXEC`` with one ``MSET`` of the documents, the RFM index updates and one Lua script
that applies every co-occurrence and popularity increment. If another process changed one of
the watched subjects meanwhile, the transaction fails and the update is recomputed from fresh
reads (optimistic locking), so concurrent writers never lose one another's events. A decision
costs two round trips (documents and cut points, then recommendation candidates).

Keys, under the configured prefix ``P``: ``P p:<subject>`` (JSON document), ``P co:<item>``
(sorted set of related items), ``P pop`` and ``P cat:<category>`` (popularity), ``P rfm:r``,
``P rfm:f``, ``P rfm:m`` (customers' recency, frequency, monetary), ``P rfm:cuts`` and
``P rfm:lock``. Scripts and transactions span many keys, so Redis Cluster is not supported;
use one primary (with replicas or Sentinel for availability).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson
import redis
from redis.exceptions import RedisError, WatchError

from journeykit.collector.decisions._rfm import CutPoints, cut_points
from journeykit.collector.decisions._store import (
    CandidateQuery,
    Candidates,
    Changes,
    Doc,
    Reader,
    StoreUnavailable,
)

__all__ = ["RedisStore"]

MAX_ATTEMPTS = 20
_LOCK_SECONDS = 60

# ARGV: prefix, then three runs, each a count followed by that many tuples:
# (item, related item, weight), (item, weight), (category, item, weight).
_INCREMENTS = """
local p = ARGV[1]
local i = 2
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZINCRBY', p .. 'co:' .. ARGV[i], ARGV[i + 2], ARGV[i + 1]); i = i + 3
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZINCRBY', p .. 'pop', ARGV[i + 1], ARGV[i]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZINCRBY', p .. 'cat:' .. ARGV[i], ARGV[i + 2], ARGV[i + 1]); i = i + 3
end
return 1
"""


def _increments(prefix: str, ch: Changes) -> list[Any]:
    args: list[Any] = [prefix, len(ch.pairs)]
    for (a, b), w in ch.pairs.items():
        args += (a, b, w)
    args.append(len(ch.popularity))
    for item, w in ch.popularity.items():
        args += (item, w)
    args.append(len(ch.category_popularity))
    for (cat, item), w in ch.category_popularity.items():
        args += (cat, item, w)
    return args


def _pairs(rows: list[tuple[bytes, float]]) -> list[tuple[str, float]]:
    return [(item.decode(), score) for item, score in rows]


class RedisStore:
    """:class:`ProfileStore` on one Redis server (redis-py's thread-safe connection pool)."""

    def __init__(self, url: str, prefix: str = "jk:", timeout: float = 0.5) -> None:
        self._r = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
        )
        self._p = prefix

    def close(self) -> None:
        self._r.close()

    def _key(self, subject: str) -> str:
        return f"{self._p}p:{subject}"

    def transact(self, update: Callable[[Reader], Changes]) -> Changes:
        try:
            for _ in range(MAX_ATTEMPTS):
                with self._r.pipeline(transaction=True) as pipe:

                    def read(subjects: Collection[str], pipe: Any = pipe) -> dict[str, Doc]:
                        ids = list(subjects)
                        keys = [self._key(s) for s in ids]
                        pipe.watch(*keys)
                        values = pipe.mget(keys)
                        return {s: orjson.loads(v) for s, v in zip(ids, values, strict=True) if v}

                    changes = update(read)
                    pipe.multi()
                    self._write(pipe, changes)
                    try:
                        pipe.execute()
                    except WatchError:
                        continue
                    return changes
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc
        raise StoreUnavailable(f"redis profile store: {MAX_ATTEMPTS} write conflicts in a row")

    def _write(self, pipe: Any, ch: Changes) -> None:
        p = self._p
        if ch.docs:
            pipe.mset({self._key(s): orjson.dumps(d) for s, d in ch.docs.items()})
        gone = [s for s, v in ch.customers.items() if v is None]
        if gone:
            for dim in "rfm":
                pipe.zrem(f"{p}rfm:{dim}", *gone)
        kept = {s: v for s, v in ch.customers.items() if v is not None}
        if kept:
            for index, dim in enumerate("rfm"):
                pipe.zadd(f"{p}rfm:{dim}", {s: v[index] for s, v in kept.items()})
        if ch.pairs or ch.popularity or ch.category_popularity:
            # EVAL, not EVALSHA: a NOSCRIPT error inside EXEC would leave the rest applied, and
            # redis-py's script loading costs a round trip per transaction; the server caches
            # the compiled script by its hash either way.
            pipe.eval(_INCREMENTS, 0, *_increments(p, ch))

    def fetch(self, subjects: Collection[str]) -> dict[str, Doc]:
        ids = list(subjects)
        try:
            values = self._r.mget([self._key(s) for s in ids])
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc
        return {s: orjson.loads(v) for s, v in zip(ids, values, strict=True) if v}

    def candidates(self, queries: Sequence[CandidateQuery]) -> list[Candidates]:
        p = self._p
        pipe = self._r.pipeline(transaction=False)
        for q in queries:
            for seed in q.seeds:
                pipe.zrevrange(f"{p}co:{seed}", 0, q.limit - 1, withscores=True)
            for cat in q.categories:
                pipe.zrevrange(f"{p}cat:{cat}", 0, q.limit - 1, withscores=True)
            pipe.zrevrange(f"{p}pop", 0, q.limit - 1, withscores=True)
        try:
            results = iter(pipe.execute())
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc
        out = []
        for q in queries:
            related: dict[str, float] = {}
            for _ in q.seeds:
                for item, w in _pairs(next(results)):
                    related[item] = related.get(item, 0.0) + w
            in_category: list[tuple[str, float]] = []
            for _ in q.categories:
                in_category.extend(_pairs(next(results)))
            out.append(Candidates(list(related.items()), in_category, _pairs(next(results))))
        return out

    def cut_points(self) -> CutPoints | None:
        try:
            raw = self._r.get(f"{self._p}rfm:cuts")
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc
        return None if raw is None else CutPoints.from_json(orjson.loads(raw))

    def refresh_cut_points(self, now: float, max_age: float) -> CutPoints | None:
        p = self._p
        current = self.cut_points()
        if current is not None and now - current.computed_at < max_age:
            return current
        try:
            # One process recomputes; the others keep scoring with the previous cut points.
            if not self._r.set(f"{p}rfm:lock", b"1", nx=True, ex=_LOCK_SECONDS):
                return current
            population = int(self._r.zcard(f"{p}rfm:f"))
            ranks = [min(population - 1, population * q // 5) for q in (1, 2, 3, 4)]
            pipe = self._r.pipeline(transaction=False)
            for dim in "rfm" if population else "":
                for rank in ranks:
                    pipe.zrange(f"{p}rfm:{dim}", rank, rank, withscores=True)
            found = iter(pipe.execute())
            # A customer merged away between ZCARD and ZRANGE leaves a rank empty: score 0.
            values = {
                (d, r): (rows[0][1] if (rows := next(found)) else 0.0)
                for d in "rfm"
                if population
                for r in ranks
            }
            fresh = cut_points(population, lambda dim, rank: float(values[dim, rank]), now)
            if fresh is not None:
                self._r.set(f"{p}rfm:cuts", orjson.dumps(fresh.as_json()))
            self._r.delete(f"{p}rfm:lock")
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc
        return fresh

    def forget(self, subjects: Collection[str]) -> int:
        ids = list(subjects)
        if not ids:
            return 0
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(*[self._key(s) for s in ids])
        for dim in "rfm":
            pipe.zrem(f"{self._p}rfm:{dim}", *ids)
        try:
            return int(pipe.execute()[0])
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc
