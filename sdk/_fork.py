"""Fork safety: a forked child gets fresh delivery state in every live client.

A thread does not survive ``fork``: a client created before gunicorn ``--preload`` or uWSGI
forks its workers would queue events in the child that no thread ever sends. One at-fork hook
for the whole process, registered when the first client is made (not at import), re-creates
each live client's queue, worker, locks and connections in the child; clients are held weakly,
so watching them keeps none alive, and the hook count never grows with the clients created.
Clients also compare their pid on every call, for forks that skip the hooks.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Protocol

__all__ = ["Forkable", "fork_lock", "watch"]

log = logging.getLogger("journeykit")


class Forkable(Protocol):
    def _after_fork(self) -> None: ...


_clients: weakref.WeakSet[Forkable] = weakref.WeakSet()
_lock = threading.Lock()
_registered = False


def watch(client: Forkable) -> None:
    """Re-initialise ``client`` in every child this process forks from now on."""
    global _registered
    with _lock:
        if not _registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_in_child)
            _registered = True
        _clients.add(client)


def fork_lock() -> threading.Lock:
    """The lock under which a client that noticed a new pid re-initialises itself."""
    return _lock


def _in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it
    for client in list(_clients):
        try:
            client._after_fork()
        except Exception:  # never break the child over tracking
            log.exception("journeykit: re-initialising a client after fork failed")
