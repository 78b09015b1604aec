"""The garbage collector's young-generation threshold while `run` owns the process.

CPython collects its youngest generation after every 700 allocations of container objects (net of
the ones freed). A node with a thousand calls in flight keeps each call's coroutine, future and
pending entry alive for a round trip, so the threshold is reached every few hundred calls and
each collection walks all of those live objects only to promote them: measured on the Plus
benchmark (1000 callers), 15-20% of the caller's CPU and 10% of the server's went to the
collector. At `GC_YOUNG_THRESHOLD` the young generation is collected some 50 times less often;
each collection walks about as many objects as before (those of the calls in flight), so pauses
do not grow, and cyclic garbage waits a little longer. Reference counting frees everything else
at once, as before.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["GC_YOUNG_THRESHOLD", "young_generation_threshold"]

GC_YOUNG_THRESHOLD = 10_000
"""Allocations between collections of the youngest generation while `run` runs (CPython: 700)."""


@contextlib.contextmanager
def young_generation_threshold(threshold: int | None) -> Iterator[None]:
    """Raise (never lower) the youngest generation's threshold to ``threshold`` for the duration,
    then put back what was there. None leaves the collector alone."""
    before = gc.get_threshold()
    if threshold is not None and gc.isenabled() and 0 < before[0] < threshold:
        gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        if gc.get_threshold()[0] == threshold:
            gc.set_threshold(*before)
