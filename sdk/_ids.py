"""Message ids: random (RFC 4122 version 4) UUIDs, drawn from a per-process pool.

``str(uuid.uuid4())`` costs a ``getrandom`` call and a ``UUID`` object per id, ~3.5 µs on the
reference VM, a tenth of a whole ``track()``. The pool reads ``os.urandom`` once per
:data:`BLOCK` ids and formats them together. The ids are the same kind: 122 bits from the
operating system's CSPRNG, with the version (4) and variant (``10``) bits set as RFC 4122 says;
nothing about one id tells anything about another.

A forked child must never hand out the ids its parent had not used yet, or both processes would
send the same ``messageId`` (and the collector would drop one as a duplicate). The pool is
therefore discarded in the child: by an :func:`os.register_at_fork` hook, registered when the
first id is drawn (not at import), and by :func:`reset`, which a client calls when it notices a
new pid (forks that skip the hooks).
"""

from __future__ import annotations

import binascii
import os
import threading
from collections.abc import Iterator
from typing import Final

__all__ = ["BLOCK", "message_id", "pool", "reset"]

BLOCK: Final = 256
"""Ids per ``os.urandom`` read: 4 KB of randomness, ~20 KB of strings held at most."""

# Byte 6's high nibble is the version (4); byte 8's top two bits are the variant (10).
_VERSION: Final = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT: Final = bytes((b & 0x3F) | 0x80 for b in range(256))
# Where each of an id's 32 hex digits goes in its 8-4-4-4-12 text.
_COLUMNS: Final = tuple((i, i + (i >= 8) + (i >= 12) + (i >= 16) + (i >= 20)) for i in range(32))


def _block(count: int) -> list[str]:
    """``count`` new ids, formatted column by column in C rather than one by one in Python."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    digits = binascii.hexlify(raw)
    text = bytearray(b"-" * (37 * count))  # 36 characters and a space per id
    for src, dst in _COLUMNS:
        text[dst::37] = digits[src::32]
    text[36::37] = b" " * count
    return text.decode("ascii").split()


class _Pool:
    """Hands out each id of a block once, from any thread, and refills when it runs dry."""

    def __init__(self) -> None:
        self.ids: Iterator[str] = iter(())
        self.lock = threading.Lock()
        self.hooked = False

    def refill(self) -> str:
        with self.lock:
            # Another thread may have refilled while this one waited for the lock.
            for mid in self.ids:
                return mid
            if not self.hooked and hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=reset)
                self.hooked = True
            ids = iter(_block(BLOCK))
            mid = next(ids)
            self.ids = ids
            return mid


pool = _Pool()
"""The process's ids; the fused track path takes from ``pool.ids`` as :func:`message_id` does."""


def message_id() -> str:
    """A new random (version 4) UUID in its canonical 36-character form."""
    # next() on a list iterator is one C call: two threads never get the same item.
    for mid in pool.ids:
        return mid
    return pool.refill()


def reset() -> None:
    """Forget the ids not handed out yet (in a forked child); the next id reads new randomness."""
    pool.ids = iter(())
    pool.lock = threading.Lock()  # a parent thread may have held it at the fork
