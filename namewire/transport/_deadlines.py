"""`DeadlineWheel`: call timeouts without a timer per call.

A timer per call (``loop.call_later`` + ``cancel``) costs about as much as the rest of a small call.
The wheel files each deadline under a coarse tick instead and runs one timer while anything is filed.
Nothing is removed when a call is answered: at its tick, an entry whose key has left the pending
table is skipped (keys are call ids, never reused on a session). Deadlines fire up to one tick late,
never early. Short timeouts, where a tick would be a large error, get a timer of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Container

__all__ = ["PRECISE_BELOW", "TICKS_PER_SECOND", "DeadlineWheel"]

TICKS_PER_SECOND = 20
PRECISE_BELOW = 1.0  # seconds; shorter timeouts get their own timer


class DeadlineWheel:
    """Calls ``expire(key, timeout)`` for each key still in ``pending`` when its deadline passes."""

    __slots__ = ("_buckets", "_expire", "_loop", "_pending", "_timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pending: Container[int],
        expire: Callable[[int, float], None],
    ) -> None:
        self._loop = loop
        self._pending = pending
        self._expire = expire
        self._buckets: dict[int, list[tuple[int, float]]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, key: int, timeout: float) -> asyncio.TimerHandle | None:
        """File ``key``; returns a timer handle to cancel for short timeouts, else None."""
        if timeout < PRECISE_BELOW:
            return self._loop.call_later(timeout, self._expire, key, timeout)
        # The first tick at or after the deadline.
        bucket = int((self._loop.time() + timeout) * TICKS_PER_SECOND) + 1
        entries = self._buckets.get(bucket)
        if entries is None:
            entries = self._buckets[bucket] = []
            if self._timer is None:
                self._timer = self._loop.call_at(bucket / TICKS_PER_SECOND, self._tick)
        entries.append((key, timeout))
        return None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buckets.clear()

    def _tick(self) -> None:
        self._timer = None
        now = self._loop.time() * TICKS_PER_SECOND
        pending = self._pending
        for bucket in sorted(b for b in self._buckets if b <= now):
            for key, timeout in self._buckets.pop(bucket):
                if key in pending:
                    self._expire(key, timeout)
        if self._buckets:
            self._timer = self._loop.call_at(min(self._buckets) / TICKS_PER_SECOND, self._tick)
