"""Publishing a data dir's consent ledger to a Redis stream, each record exactly once.

The ledger is the outbox: the publisher tails ``<data-dir>/consent/ledger.ndjson`` from where
it last got to and sends what follows, in order, to one Lua script that ``XADD``s each consent
record whose ``seq`` is past the ledger's progress in Redis (``HSET <prefix>consent:published
<ledger id> <seq>``), appends it to its subject's field of the snapshot hash
``<prefix>consent:subjects`` (what a collector reads at start, whatever the stream kept), and
moves the progress on, atomically. So a record is published once
whichever process sends it (every worker of a data dir tails the same file), a change recorded
while Redis was away is published once it is back, and one recorded just before a crash is
published by the next start: nothing is queued in memory, nothing can overflow.

The script refuses a record that would leave a hole (a ``seq`` past progress + 1): that only
happens when Redis lost its data (a restart without persistence), and the publisher then reads
the ledger again from its start, so every host's consent is back in the stream.

A ledger is known by the first 16 hex digits of its first record's hash (unique to it, kept by a
repair).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from journeykit.consent import LedgerRecord
from journeykit.consent.records import LedgerError, RecordKind

__all__ = ["LedgerPublisher"]

# The records to send in one script call: bounds the time Redis spends in it (about 2 ms).
_CHUNK = 256
_ID_FILE = "ledger-id"  # beside the ledger: this data dir's random id (see data_dir_id)
# The most of the ledger read at once: bounds memory when a large ledger is published.
_READ_BYTES = 4 * 1024 * 1024

# KEYS: the stream, the progress hash, the snapshot hash. ARGV: ledger id, MAXLEN, then per
# record: seq, subject, entry (both empty for a record that is not a consent change). Returns
# {records published, progress}; a record whose seq is past progress + 1 stops it (a hole).
_PUBLISH = """
local done = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local added = 0
for i = 3, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > done + 1 then break end
  if seq == done + 1 then
    local body = ARGV[i + 2]
    if body ~= '' then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'r', body)
      local old = redis.call('HGET', KEYS[3], ARGV[i + 1])
      redis.call('HSET', KEYS[3], ARGV[i + 1], (old or '') .. body .. '\\n')
      added = added + 1
    end
    done = seq
  end
end
redis.call('HSET', KEYS[2], ARGV[1], done)
return {added, done}
"""


@dataclass(frozen=True, slots=True)
class _Line:
    seq: int
    end: int  # offset just past the line in the file
    subject: str
    entry: str  # the stream entry's JSON; empty: not a consent change, not published


def data_dir_id(directory: Path) -> str:
    """A random id made once for the data dir holding ``directory`` and kept in it.

    Made in a temporary file and linked into place, so the workers of one data dir that
    start together agree on one id (the link fails for all but the first).
    """
    path = directory / _ID_FILE
    for _ in range(3):
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            text = ""
        if text:
            return text
        directory.mkdir(parents=True, exist_ok=True)
        temp = directory / f".{_ID_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        temp.write_text(secrets.token_hex(8) + "\n", encoding="ascii")
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink(missing_ok=True)
    raise OSError(f"cannot read or make {path}")


def entry(record: LedgerRecord, ledger_id: str) -> str:
    """The JSON of ``record``'s stream entry (the fields ``ConsentStore.apply_record`` takes).

    One field, ``r``, holds it: readers parse one value per entry rather than ten (reading the
    stream at start is then bound by applying, not by parsing replies).
    """
    body = {
        "subject": record.subject,
        "linked_ids": list(record.linked_ids),
        "granted": list(record.granted),
        "denied": list(record.denied),
        "source": record.source,
        "at": record.at,
        "notice_version": record.notice_version,
        "ledger": ledger_id,
        "seq": record.seq,
    }
    return orjson.dumps(body).decode()


class LedgerPublisher:
    """Tails one ledger file and publishes its consent records; one thread calls it.

    :meth:`publish` raises ``redis.RedisError`` when Redis cannot be reached; the next call
    goes on from the same place.
    """

    def __init__(
        self,
        client: redis.Redis,
        ledger: Path,
        keys: tuple[str, str, str],
        max_entries: int,
    ) -> None:
        self._r = client
        self._ledger = ledger
        self._keys = list(keys)  # the stream, the progress hash, the snapshot hash
        self._max_entries = max_entries
        self._script: Any = client.register_script(_PUBLISH)
        self.ledger_id: str | None = None
        self._offset = 0  # the file is published (or skipped) up to here
        self._seq = 0  # the seq of the last line before the offset
        self._done: int | None = None  # the ledger's progress in Redis, as last known
        #: Set (by any thread) to have the next call ask Redis how far it has this ledger: after
        #: a failure, and now and then, so a Redis that lost its data gets it back.
        self.check_due = False
        self.published = 0  # records this process put in the stream
        self.malformed = 0  # ledger lines that could not be read (their seq is skipped)

    @property
    def behind_bytes(self) -> int:
        """How much of the ledger this publisher has not yet seen published."""
        try:
            return max(0, self._ledger.stat().st_size - self._offset)
        except FileNotFoundError:
            return 0

    def _restart(self) -> None:
        self._offset = self._seq = 0
        self._done = None

    def _identify(self) -> str | None:
        """The ledger's id; None while the ledger is empty.

        This data dir's own random id, and the hash of the ledger's first record (a repaired
        or replaced ledger is another one). The hash alone is not unique: a record holds no
        host, so two hosts that stored the same first consent (a resend to another host while
        Redis was away) would take each other's records for their own and skip them.
        """
        if self.ledger_id is None:
            try:
                with self._ledger.open("rb") as handle:
                    first = handle.readline()
            except FileNotFoundError:
                return None
            if not first.endswith(b"\n"):
                return None
            try:
                head = str(orjson.loads(first)["hash"])[:16]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                head = "unreadable"  # still one id per data dir; counted below
            self.ledger_id = f"{data_dir_id(self._ledger.parent)}-{head}"
        return self.ledger_id

    def publish(self) -> int:
        """Publish what the ledger holds past the last call; how many records went out."""
        try:
            size = self._ledger.stat().st_size
        except FileNotFoundError:
            return 0
        if size < self._offset:  # repaired or replaced: its records from the start again
            self.ledger_id = None
            self._restart()
        ledger_id = self._identify()
        if ledger_id is None:
            return 0
        if self._done is None or self.check_due:
            self.check_due = False
            found = self._r.hget(self._keys[1], ledger_id)
            done = int(found) if found is not None else 0
            if done < self._seq:  # Redis lost data since: publish the ledger again
                self._offset = self._seq = 0
            self._done = done
        if size == self._offset:
            return 0
        sent, rewound = 0, False
        while lines := self._read(ledger_id):
            for start in range(0, len(lines), _CHUNK):
                chunk = lines[start : start + _CHUNK]
                args: list[str | int] = [ledger_id, self._max_entries]
                for line in chunk:
                    args += [line.seq, line.subject, line.entry]
                added, done = self._script(keys=self._keys, args=args)
                sent += int(added)
                self.published += int(added)
                if int(done) < chunk[-1].seq:
                    # A hole: Redis lost the stream's data. Read the ledger again from its
                    # start (once per call: a ledger that does not start at seq 1 is damaged).
                    if rewound:
                        return sent
                    rewound = True
                    self._restart()
                    self._done = int(done)
                    break
                self._done = int(done)
                self._offset, self._seq = chunk[-1].end, chunk[-1].seq
        return sent

    def _read(self, ledger_id: str) -> list[_Line]:
        """The next complete lines past the offset whose records Redis does not have yet."""
        done = self._done or 0
        while True:
            with self._ledger.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read(_READ_BYTES)
            end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
            if end == 0:
                return []
            lines: list[_Line] = []
            offset, seq = self._offset, self._seq
            for raw in data[:end].splitlines(keepends=True):
                offset += len(raw)
                seq += 1  # a clean ledger holds seq n on line n; a readable record says its own
                subject = body = ""
                try:
                    record = LedgerRecord.from_json(orjson.loads(raw), 0)
                except (orjson.JSONDecodeError, LedgerError):
                    self.malformed += 1
                else:
                    seq = record.seq
                    if record.kind == RecordKind.CONSENT and seq > done:
                        subject, body = record.subject, entry(record, ledger_id)
                if seq <= done and not lines:
                    self._offset, self._seq = offset, seq  # in Redis already: skipped for good
                    continue
                lines.append(_Line(seq, offset, subject, body))
            if lines:
                return lines
