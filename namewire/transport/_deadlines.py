"""`DeadlineWheel`: call timeouts without a timer per call.

A timer per call (``loop.call_later`` + ``cancel``) costs about as much as the rest of a small call.
The wheel files each deadline under a coarse tick instead and runs one timer while anything is filed;
an entry whose call was answered is simply skipped when its tick comes. Deadlines fire up to one tick
late, never early. Short timeouts, where a tick would be a large error, use a timer of their own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

__all__ = ["TICK", "DeadlineWheel"]

TICK = 0.05  # seconds; timeouts under PRECISE_BELOW get their own timer
PRECISE_BELOW = 1.0


class DeadlineWheel:
    """Calls ``expire(key, timeout)`` for each key whose deadline passed, unless `discard`-ed."""

    __slots__ = ("_buckets", "_expire", "_live", "_loop", "_timer")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, expire: Callable[[int, float], None]
    ) -> None:
        self._loop = loop
        self._expire = expire
        self._buckets: dict[int, list[tuple[int, float]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        # key -> bucket it is filed under; answered calls are removed here and skipped at their tick
        self._live: dict[int, int] = {}

    def add(self, key: int, timeout: float) -> asyncio.TimerHandle | None:
        """File ``key``; returns a timer handle to cancel for short timeouts, else None."""
        if timeout < PRECISE_BELOW:
            return self._loop.call_later(timeout, self._expire, key, timeout)
        bucket = math.ceil((self._loop.time() + timeout) / TICK)
        entries = self._buckets.get(bucket)
        if entries is None:
            entries = self._buckets[bucket] = []
        entries.append((key, timeout))
        self._live[key] = bucket
        if self._timer is None:
            self._timer = self._loop.call_at(bucket * TICK, self._tick)
        return None

    def discard(self, key: int) -> None:
        self._live.pop(key, None)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buckets.clear()
        self._live.clear()

    def _tick(self) -> None:
        self._timer = None
        now_bucket = math.floor(self._loop.time() / TICK)
        live = self._live
        for bucket in sorted(b for b in self._buckets if b <= now_bucket):
            for key, timeout in self._buckets.pop(bucket):
                if live.get(key) == bucket:
                    del live[key]
                    self._expire(key, timeout)
        if self._buckets:
            self._timer = self._loop.call_at(min(self._buckets) * TICK, self._tick)
