"""Garbage-collector settings for a serving collector process.

Every event allocates a dozen containers (its parsed dicts, the stored copy, the answer), so
CPython's default first-generation threshold (700 container allocations) runs a collection
every ~60 events, and every tenth of those walks the process's long-lived objects too: the
dedup window, the consent store, the profile caches. Measured on the ingestion path alone
(``docs/benchmarks.md``, "Collector ingestion"), that was a fifth of the CPU per event.

Almost nothing the request path allocates is cyclic (parsed JSON and our dicts are trees),
so collecting less often frees the same memory through reference counting and costs only
the cycles that do occur (exceptions with tracebacks, mostly), which wait longer. Objects
alive after start-up are moved out of the collector's sight with ``gc.freeze()``: they live
as long as the process.

``tune_gc`` is called by ``journeykit collector serve`` (and by each of its worker processes,
see ``_tuning``) just before serving, never on import: an application that embeds the ASGI app
keeps its own settings. ``collect_young`` is for any process: it changes no setting.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "collect_young", "tune_gc"]

GC_THRESHOLDS = (20_000, 20, 100)
"""``gc.set_threshold`` arguments: a young collection per ~20,000 container allocations."""


def tune_gc() -> None:
    """Freeze what start-up built and make young collections rarer; see the module docstring."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def collect_young() -> None:
    """Collect the young generations now, so a container made just before is moved to the old
    generation while it is still small.

    For a container that then grows large and lives long (a dedup generation: up to 62,500
    ids). Made young, it stays young until a collection, and with collections this rare several
    of them were young at once: every young collection then walked them all, 10-33 ms with every
    request of the process waiting (``bench/collector_phases.py``, docs/benchmarks.md). Old, it
    is walked only by full collections. Costs one collection of the young generations (a few
    milliseconds at most, once per such container); nothing when the collector is disabled.
    """
    if gc.isenabled():
        gc.collect(1)
