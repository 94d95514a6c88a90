"""The shared profile store on Redis: several collector processes or hosts, one state.

An update costs a constant number of round trips whatever the batch size: ``WATCH`` + ``MGET``
of the batch's subjects (again only to follow an alias that points outside the batch), then one
``MULTI``/``EXEC`` with one ``MSET`` of the documents, the RFM index updates and one Lua script
that applies every co-occurrence and popularity increment. If another process changed one of
the watched subjects meanwhile, the transaction fails and the update is recomputed from fresh
reads (optimistic locking), so concurrent writers never lose one another's events. A decision
costs one round trip: the ``DECIDE`` script (``_redis_decide``) returns, as one JSON text, the
documents (aliases followed) and, per profile, only the recommendation candidates a top-K
ranking of it can reach.

Keys, under the configured prefix ``P``: ``P p:<subject>`` (JSON document), ``P co:<item>``
(sorted set of related items), ``P pop`` and ``P cat:<category>`` (popularity), ``P rfm:r``,
``P rfm:f``, ``P rfm:m`` (customers' recency, frequency, monetary), ``P rfm:cuts`` and
``P rfm:lock``. Scripts and transactions span many keys, so Redis Cluster is not supported;
use one primary (with replicas or Sentinel for availability).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson
import redis
from redis.exceptions import RedisError, WatchError

from journeykit.collector.decisions._redis_decide import DECIDE, decode, prefetched
from journeykit.collector.decisions._rfm import CutPoints, cut_points, quintile_ranks
from journeykit.collector.decisions._store import (
    MAX_ALIAS_HOPS,
    RELATED_KEEP,
    CandidateQuery,
    Candidates,
    Changes,
    Doc,
    ItemLists,
    ItemStats,
    Reader,
    StoreUnavailable,
    from_lists,
)

__all__ = ["RedisStore"]

MAX_ATTEMPTS = 20
_LOCK_SECONDS = 60

# ARGV: prefix, the neighbours kept per item, then three runs, each a count then that many
# groups: (item, m, then m (related item, weight)), (item, weight), (category, m, then m
# (item, weight)). Each item's neighbours are cut to the heaviest after its increments.
_INCREMENTS = """
local p = ARGV[1]
local keep = tonumber(ARGV[2])
local i = 3
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local key = p .. 'co:' .. ARGV[i]
  local m = tonumber(ARGV[i + 1]); i = i + 2
  for _ = 1, m do
    redis.call('ZINCRBY', key, ARGV[i + 1], ARGV[i]); i = i + 2
  end
  redis.call('ZREMRANGEBYRANK', key, 0, -keep - 1)
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZINCRBY', p .. 'pop', ARGV[i + 1], ARGV[i]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local key = p .. 'cat:' .. ARGV[i]
  local m = tonumber(ARGV[i + 1]); i = i + 2
  for _ = 1, m do
    redis.call('ZINCRBY', key, ARGV[i + 1], ARGV[i]); i = i + 2
  end
end
return 1
"""


def _increments(prefix: str, stats: ItemStats) -> list[Any]:
    args: list[Any] = [prefix, RELATED_KEEP, len(stats.related)]
    for item, related in stats.related.items():
        args += (item, len(related))
        for other, w in related.items():
            args += (other, w)
    args.append(len(stats.popularity))
    for item, w in stats.popularity.items():
        args += (item, w)
    args.append(len(stats.category_popularity))
    for cat, items in stats.category_popularity.items():
        args += (cat, len(items))
        for item, w in items.items():
            args += (item, w)
    return args


def _pairs(rows: list[tuple[bytes, float]]) -> list[tuple[str, float]]:
    return [(item.decode(), score) for item, score in rows]


_MARKER_SECONDS = 60
"""How long a transaction's marker outlives it: far longer than a retry takes."""


class RedisStore:
    """:class:`ProfileStore` on one Redis server (redis-py's thread-safe connection pool)."""

    # One script of 20,000 increments stays far under the socket timeout.
    stats_batch_limit = 20_000
    local = False

    def __init__(self, url: str, prefix: str = "jk:", timeout: float = 0.5) -> None:
        self._r = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
        )
        self._p = prefix
        self._decide = self._r.register_script(DECIDE)

    def close(self) -> None:
        self._r.close()

    def _key(self, subject: str) -> str:
        return f"{self._p}p:{subject}"

    def transact(self, update: Callable[[Reader], Changes]) -> Changes:
        # Written inside the transaction: redis-py reports a reply lost to a timeout as a
        # WatchError too, though EXEC may have run; read again and applied on top, the events
        # would count twice. The marker says whether it ran.
        marker = f"{self._p}tx:{uuid.uuid4().hex}"
        try:
            for attempt in range(MAX_ATTEMPTS):
                if attempt:
                    # Another writer changed a profile we read: back off (full jitter, capped)
                    # so that writers contending for one hot profile take turns.
                    time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
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
                    pipe.set(marker, b"1", ex=_MARKER_SECONDS)
                    try:
                        pipe.execute()
                    except WatchError:
                        if self._r.exists(marker):
                            return changes  # it ran: only its reply was lost
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
        if len(ch.stats):
            # EVAL, not EVALSHA: a NOSCRIPT error inside EXEC would leave the rest applied, and
            # redis-py's script loading costs a round trip per transaction; the server caches
            # the compiled script by its hash either way.
            pipe.eval(_INCREMENTS, 0, *_increments(p, ch.stats))

    def fetch(self, subjects: Collection[str]) -> dict[str, Doc]:
        ids = list(subjects)
        try:
            values = self._r.mget([self._key(s) for s in ids])
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc
        return {s: orjson.loads(v) for s, v in zip(ids, values, strict=True) if v}

    def fetch_for_decisions(
        self, subjects: Collection[str], seeds: Collection[str], categories: Collection[str], k: int
    ) -> tuple[dict[str, Doc], ItemLists]:
        ids = list(subjects)
        args: list[str | int] = [self._p, k, MAX_ALIAS_HOPS, len(ids), *ids, len(seeds), *seeds]
        args += [len(categories), *categories]
        try:
            raw = self._decide(args=args)
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc
        return decode(raw)

    def candidates(
        self, queries: Sequence[CandidateQuery], lists: ItemLists | None = None
    ) -> list[Candidates]:
        have = lists or {}
        ready = [prefetched(have, q) for q in queries]
        rest = [q for q, found in zip(queries, ready, strict=True) if found is None]
        read = iter(self._read_candidates(rest, have) if rest else ())
        return [found if found is not None else next(read) for found in ready]

    def _read_candidates(
        self, queries: Sequence[CandidateQuery], have: ItemLists
    ) -> list[Candidates]:
        """Candidates from each list the query names: prefetched, else read in one trip."""
        p = self._p
        found: dict[tuple[str, int], list[tuple[str, float]]] = {}
        pipe = self._r.pipeline(transaction=False)
        wanted: list[tuple[str, int]] = []
        for q in queries:
            keys = [f"co:{seed}" for seed in q.seeds] + [f"cat:{c}" for c in q.categories]
            for key in [*keys, "pop"]:
                if (key, q.limit) in found or (key, q.limit) in wanted:
                    continue
                items = from_lists(have, key, q.limit)
                if items is not None:
                    found[key, q.limit] = items
                else:
                    wanted.append((key, q.limit))
                    pipe.zrevrange(f"{p}{key}", 0, q.limit - 1, withscores=True)
        if wanted:  # not prefetched (the queue changed the query): one more trip
            try:
                results = pipe.execute()
            except RedisError as exc:
                raise StoreUnavailable(f"redis profile store: {exc}") from exc
            found.update(zip(wanted, map(_pairs, results), strict=True))
        out = []
        for q in queries:
            related: dict[str, float] = {}
            for seed in q.seeds:
                for item, w in found[f"co:{seed}", q.limit]:
                    related[item] = related.get(item, 0.0) + w
            in_category: list[tuple[str, float]] = []
            for c in q.categories:
                in_category.extend(found[f"cat:{c}", q.limit])
            out.append(Candidates(list(related.items()), in_category, found["pop", q.limit]))
        return out

    def cut_points(self) -> CutPoints | None:
        try:
            raw = self._r.get(f"{self._p}rfm:cuts")
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc
        return None if raw is None else CutPoints.from_json(orjson.loads(raw))

    def customer_count(self) -> int:
        try:
            return int(self._r.zcard(f"{self._p}rfm:f"))
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc

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
            ranks = quintile_ranks(population)
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

    def clear(self) -> None:
        # Profile and item keys only: the dedup window (``d:``) shares the prefix and is
        # not derived from the event files.
        p = self._p
        try:
            for pattern in (f"{p}p:*", f"{p}co:*", f"{p}cat:*", f"{p}rfm:*", f"{p}pop"):
                batch: list[bytes] = []
                for key in self._r.scan_iter(match=pattern, count=1_000):
                    batch.append(key)
                    if len(batch) == 1_000:
                        self._r.unlink(*batch)
                        batch.clear()
                if batch:
                    self._r.unlink(*batch)
        except RedisError as exc:
            raise StoreUnavailable(f"redis profile store: {exc}") from exc

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
