"""The embedded profile store: one SQLite file in WAL mode, shared safely by local processes.

Each ``transact`` is one ``BEGIN IMMEDIATE`` transaction: the write lock is taken before
reading, so two collector processes on one host serialize their updates (waiting up to the
busy timeout) and never lose one another's changes. WAL lets decisions read while a write is
in progress: reads have a connection of their own, so a decision does not wait while this
process's flush folds (it reads what was committed before the flush, and the write-behind
queue, which still holds the flush's events, fills in the rest). ``synchronous=NORMAL``: a
power cut may lose the last transactions, never corrupt the file; profiles are derived data
that the NDJSON event files can rebuild.

Item lists (neighbours, popular, per category) are kept in the process between writes of item
statistics (``_item_cache``): each such write bumps the ``items`` generation in ``meta`` in its
transaction, and a decision's reads check it once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import orjson

from journeykit.collector._private_files import create_private
from journeykit.collector.decisions._item_cache import FETCH, ItemCache
from journeykit.collector.decisions._rfm import CutPoints, cut_points
from journeykit.collector.decisions._store import (
    MAX_ALIAS_HOPS,
    CandidateQuery,
    Candidates,
    Changes,
    Doc,
    ItemLists,
    Reader,
    StoreUnavailable,
    top_neighbours,
)

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    subject TEXT PRIMARY KEY, doc BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS customers (
    subject TEXT PRIMARY KEY, r REAL NOT NULL, f INTEGER NOT NULL, m REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS customers_r ON customers(r);
CREATE INDEX IF NOT EXISTS customers_f ON customers(f);
CREATE INDEX IF NOT EXISTS customers_m ON customers(m);
CREATE TABLE IF NOT EXISTS neighbours (item TEXT PRIMARY KEY, top BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS popular (item TEXT PRIMARY KEY, w REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS popular_top ON popular(w DESC);
CREATE TABLE IF NOT EXISTS category_popular (
    category TEXT NOT NULL, item TEXT NOT NULL, w REAL NOT NULL, PRIMARY KEY (category, item)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS category_top ON category_popular(category, w DESC);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""
_MAX_VARS = 500  # well under SQLite's bound variable limit


def _json_by_key(db: sqlite3.Connection, select: str, keys: Collection[str]) -> dict[str, Any]:
    """``select`` (ending in ``IN ``) of (key, JSON) rows for ``keys``, decoded, by key.

    In chunks of ``_MAX_VARS``: SQLite bounds the parameters of one statement.
    """
    out: dict[str, Any] = {}
    ids = list(keys)
    for start in range(0, len(ids), _MAX_VARS):
        chunk = ids[start : start + _MAX_VARS]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(f"{select}({marks})", chunk)
        out.update((key, orjson.loads(value)) for key, value in rows)
    return out


def _profiles(db: sqlite3.Connection, subjects: Collection[str]) -> dict[str, Doc]:
    return _json_by_key(db, "SELECT subject, doc FROM profiles WHERE subject IN ", subjects)


class SqliteStore:
    """:class:`ProfileStore` on SQLite: a connection for writes and one for reads, each used
    under its own lock (threads share them)."""

    # Local and without a socket timeout: fewer, larger item-statistic writes rewrite each
    # product's neighbour list less often.
    stats_batch_limit = 1_000_000
    local = True

    def __init__(
        self, path: Path, busy_timeout: float = 5.0, item_cache_entries: int = 250_000
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path)
        self.path = path
        self._lock = threading.Lock()  # the write connection
        self._read_lock = threading.Lock()  # the read connection and the item cache
        self.items = ItemCache(item_cache_entries)
        try:
            self._db = self._connect(busy_timeout)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._reader = self._connect(busy_timeout)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"profile store {path}: {exc}") from exc

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._reader.close()
            self._db.close()

    def _read(self, subjects: Collection[str]) -> dict[str, Doc]:
        """Documents as the write transaction sees them (its reader)."""
        return _profiles(self._db, subjects)

    def transact(self, update: Callable[[Reader], Changes]) -> Changes:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"profile store {self.path}: {exc}") from exc
            try:
                changes = update(self._read)
                self._write(changes)
                self._db.execute("COMMIT")
            except BaseException as exc:
                self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreUnavailable(f"profile store {self.path}: {exc}") from exc
                raise
        return changes

    def _write(self, ch: Changes) -> None:
        db = self._db
        db.executemany(
            "INSERT OR REPLACE INTO profiles(subject, doc) VALUES (?, ?)",
            [(s, orjson.dumps(d)) for s, d in ch.docs.items()],
        )
        # One pass, rows built without unpacking: a third less than two filtered comprehensions.
        gone: list[tuple[str]] = []
        kept: list[tuple[str, float, int, float]] = []
        for s, v in ch.customers.items():
            if v is None:
                gone.append((s,))
            else:
                kept.append((s, v[0], v[1], v[2]))
        db.executemany("DELETE FROM customers WHERE subject = ?", gone)
        db.executemany(
            "INSERT OR REPLACE INTO customers(subject, r, f, m) VALUES (?, ?, ?, ?)", kept
        )
        stats = ch.stats
        if len(stats):
            self._bump_items()
        if stats.related:
            stored = self._neighbours(db, stats.related)
            db.executemany(
                "INSERT OR REPLACE INTO neighbours(item, top) VALUES (?, ?)",
                [
                    (item, orjson.dumps(top_neighbours(stored.get(item), more)))
                    for item, more in stats.related.items()
                ],
            )
        db.executemany(
            "INSERT INTO popular(item, w) VALUES (?, ?)"
            " ON CONFLICT(item) DO UPDATE SET w = w + excluded.w",
            stats.popularity.items(),
        )
        db.executemany(
            "INSERT INTO category_popular(category, item, w) VALUES (?, ?, ?)"
            " ON CONFLICT(category, item) DO UPDATE SET w = w + excluded.w",
            chain.from_iterable(  # rows built by zip in C, not by a Python loop per item
                zip(repeat(c), items, items.values())
                for c, items in stats.category_popularity.items()
            ),
        )

    def _bump_items(self) -> None:
        """A new item generation: every process's kept lists are stale (inside a write)."""
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES ('items', 1)"
            " ON CONFLICT(key) DO UPDATE SET value = value + 1"
        )

    def _items_generation(self) -> Any:
        row = self._reader.execute("SELECT value FROM meta WHERE key = 'items'").fetchone()
        return None if row is None else row[0]

    @staticmethod
    def _neighbours(db: sqlite3.Connection, items: Collection[str]) -> dict[str, list[list[Any]]]:
        return _json_by_key(db, "SELECT item, top FROM neighbours WHERE item IN ", items)

    def fetch(self, subjects: Collection[str]) -> dict[str, Doc]:
        with self._read_lock:
            try:
                return _profiles(self._reader, subjects)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"profile store {self.path}: {exc}") from exc

    def fetch_for_decisions(
        self, subjects: Collection[str], seeds: Collection[str], categories: Collection[str], k: int
    ) -> tuple[dict[str, Doc], ItemLists]:
        # Local reads cost microseconds: candidates() reads the lists it needs afterwards.
        docs = self.fetch(subjects)
        for _ in range(MAX_ALIAS_HOPS):
            missing = {d["alias"] for d in docs.values() if "alias" in d} - set(docs)
            if not missing:
                break
            docs.update(self.fetch(missing))
        return docs, {}

    def candidates(
        self, queries: Sequence[CandidateQuery], lists: ItemLists | None = None
    ) -> list[Candidates]:
        with self._read_lock:
            try:
                if self.items.enabled:
                    # Read before the lists: a write in between leaves them tagged older.
                    self.items.check(self._items_generation())
                return [self._candidates(q) for q in queries]
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"profile store {self.path}: {exc}") from exc

    def _candidates(self, q: CandidateQuery) -> Candidates:
        related: dict[str, float] = {}
        for top in self._neighbour_lists(q.seeds):
            for item, w in top[: q.limit]:
                related[item] = related.get(item, 0.0) + w
        in_category: list[tuple[str, float]] = []
        for category in q.categories:
            in_category.extend(
                self._top(
                    f"cat:{category}",
                    "SELECT item, w FROM category_popular WHERE category = ?"
                    " ORDER BY w DESC, item DESC LIMIT ?",
                    (category,),
                    q.limit,
                )
            )
        # Ties in Redis's order (member descending), so both stores pick the same items.
        popular = self._top(
            "pop", "SELECT item, w FROM popular ORDER BY w DESC, item DESC LIMIT ?", (), q.limit
        )
        return Candidates(list(related.items()), in_category, popular)

    def _neighbour_lists(self, seeds: Sequence[str]) -> list[list[list[Any]]]:
        """The stored neighbour lists of ``seeds`` (kept ones, then the rest in one read)."""
        cache = self.items
        if not cache.enabled:
            return list(self._neighbours(self._reader, seeds).values())
        out: list[list[list[Any]]] = []
        missing: list[str] = []
        for seed in seeds:
            top = cache.neighbours(seed)
            if top is None:
                missing.append(seed)
            else:
                out.append(top)
        if missing:
            found = self._neighbours(self._reader, missing)
            for seed in missing:
                top = found.get(seed, [])
                cache.keep_neighbours(seed, top)
                out.append(top)
        return out

    def _top(self, key: str, sql: str, params: tuple[str, ...], limit: int) -> list[Any]:
        """The first ``limit`` rows of an ordered list query, kept for later reads."""
        cache = self.items
        if not cache.enabled:
            return self._reader.execute(sql, (*params, limit)).fetchall()
        items = cache.ranked(key, limit)
        if items is None:
            asked = max(limit, FETCH)
            rows = self._reader.execute(sql, (*params, asked)).fetchall()
            cache.keep_ranked(key, asked, rows)
            items = rows[:limit]
        return items

    def cut_points(self) -> CutPoints | None:
        with self._read_lock:
            try:
                row = self._reader.execute("SELECT value FROM meta WHERE key = 'rfm'").fetchone()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"profile store {self.path}: {exc}") from exc
        return None if row is None else CutPoints.from_json(orjson.loads(row[0]))

    def customer_count(self) -> int:
        with self._read_lock:
            try:
                return int(self._reader.execute("SELECT COUNT(*) FROM customers").fetchone()[0])
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"profile store {self.path}: {exc}") from exc

    def refresh_cut_points(self, now: float, max_age: float) -> CutPoints | None:
        def nth(dim: str, rank: int) -> float:
            sql = f"SELECT {dim} FROM customers ORDER BY {dim} LIMIT 1 OFFSET ?"  # noqa: S608
            return float(self._db.execute(sql, (rank,)).fetchone()[0])

        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    row = db.execute("SELECT value FROM meta WHERE key = 'rfm'").fetchone()
                    current = None if row is None else CutPoints.from_json(orjson.loads(row[0]))
                    if current is None or now - current.computed_at >= max_age:
                        (population,) = db.execute("SELECT COUNT(*) FROM customers").fetchone()
                        current = cut_points(population, nth, now)
                        if current is not None:
                            db.execute(
                                "INSERT OR REPLACE INTO meta(key, value) VALUES ('rfm', ?)",
                                (orjson.dumps(current.as_json()),),
                            )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"profile store {self.path}: {exc}") from exc
        return current

    def clear(self) -> None:
        def erase(_: Reader) -> Changes:
            for table in ("profiles", "customers", "neighbours", "popular", "category_popular"):
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            self._db.execute("DELETE FROM meta WHERE key = 'rfm'")
            self._bump_items()
            return Changes()

        self.transact(erase)

    def forget(self, subjects: Collection[str]) -> int:
        ids = [(s,) for s in subjects]
        found = 0

        def erase(_: Reader) -> Changes:
            nonlocal found
            before = self._db.total_changes
            self._db.executemany("DELETE FROM profiles WHERE subject = ?", ids)
            found = self._db.total_changes - before
            self._db.executemany("DELETE FROM customers WHERE subject = ?", ids)
            return Changes()

        self.transact(erase)
        return found
