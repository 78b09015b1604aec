"""Timers: `sleep`, `sleep_until`, one-shot `call_later` and the drift-free repeating `every`.

All times are the running loop's clock (`loop.time()`, monotonic seconds).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from ._spawn import Process, spawn

__all__ = ["Ticker", "Timer", "call_later", "every", "sleep", "sleep_until"]

logger = logging.getLogger("namewire.runtime")


async def sleep(seconds: float) -> None:
    """Suspend the calling task for ``seconds`` (at least; 0 just yields to the loop)."""
    await asyncio.sleep(seconds)


async def sleep_until(deadline: float) -> None:
    """Suspend the calling task until the loop clock reaches ``deadline`` (returns at once if past)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    handle = loop.call_at(deadline, _wake, waiter)
    try:
        await waiter
    finally:
        handle.cancel()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _label(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", type(fn).__name__)


class Timer:
    """Handle of a `call_later` timer.

    ``when`` is the loop time it fires at. ``process`` is the light process running an async callback
    once fired, else None.
    """

    __slots__ = ("_args", "_fn", "_handle", "_name", "fired", "process")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], name: str | None) -> None:
        self._fn = fn
        self._args = args
        self._name = name
        self._handle: asyncio.TimerHandle | None = None
        self.fired = False
        self.process: Process[Any] | None = None

    @property
    def when(self) -> float:
        """The loop time at which the timer fires (or fired)."""
        assert self._handle is not None
        return self._handle.when()

    def cancel(self) -> None:
        """Stop the timer. If it already fired an async callback, that light process is cancelled."""
        if self._handle is not None:
            self._handle.cancel()
        if self.process is not None:
            self.process.cancel()

    def cancelled(self) -> bool:
        """True if `cancel` was called before the timer fired."""
        return self._handle is not None and self._handle.cancelled() and not self.fired

    def _fire(self) -> None:
        self.fired = True
        try:
            result = self._fn(*self._args)
        except Exception:
            logger.exception("timer callback %s failed", self._name or _label(self._fn))
            return
        if inspect.iscoroutine(result):
            self.process = spawn(result, name=self._name)


def call_later(
    delay: float, fn: Callable[..., Any], /, *args: Any, name: str | None = None
) -> Timer:
    """Call ``fn(*args)`` once, ``delay`` seconds from now, and return a cancellable `Timer`.

    A plain function runs on the loop at that moment; an exception it raises is logged with its
    traceback on ``namewire.runtime``. An async function is started as a light process (`spawn`) named
    ``name``. Raises RuntimeError without a running loop.
    """
    loop = asyncio.get_running_loop()
    timer = Timer(fn, args, name)
    timer._handle = loop.call_later(max(delay, 0.0), timer._fire)
    return timer


class Ticker:
    """Handle of an `every` timer: a light process that calls a function on a fixed grid of deadlines.

    The k-th call is due at ``start + k * interval`` (``start`` is the loop time when `every` was
    called), so lateness never accumulates. A call that runs long makes the ticker skip the deadlines it
    missed rather than fire them back to back: the next call is the first deadline within one interval
    of the end of the slow call. ``ticks`` counts calls made, ``skipped`` deadlines dropped, and
    ``deadline`` is the loop time the current (or last) call was due at.

    `cancel` requests the stop; ``await stop()`` also waits for it. As an async context manager the
    ticker is stopped on leaving the block.
    """

    def __init__(
        self, interval: float, fn: Callable[..., Any], args: tuple[Any, ...], name: str
    ) -> None:
        self.interval = interval
        self.start = asyncio.get_running_loop().time()
        self.ticks = 0
        self.skipped = 0
        self.deadline = self.start
        self._fn = fn
        self._args = args
        self.process: Process[None] = spawn(self._run, name=name)

    @property
    def name(self) -> str:
        """The light process's name."""
        return self.process.name

    def cancel(self) -> None:
        """Stop ticking; a call in progress is cancelled at its next await."""
        self.process.cancel()

    async def stop(self) -> None:
        """Stop ticking and wait until the ticker's light process has ended."""
        self.process.cancel()
        await asyncio.wait([self.process.task])

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval
        k = 1
        while True:
            self.deadline = self.start + k * interval
            await sleep_until(self.deadline)
            self.ticks += 1
            try:
                result = self._fn(*self._args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("ticker %s: callback failed; still ticking", self.name)
            # The first deadline later than one interval ago: at most one late call, never a burst.
            elapsed = (loop.time() - self.start) / interval
            following = max(k + 1, math.floor(elapsed))
            self.skipped += following - k - 1
            k = following


def every(
    interval: float, fn: Callable[..., Any], /, *args: Any, name: str | None = None
) -> Ticker:
    """Call ``fn(*args)`` every ``interval`` seconds, the first time one interval from now.

    ``fn`` may be a plain or an async function; an async one is awaited before the next deadline is
    considered, so calls never overlap. An exception from ``fn`` is logged and the ticker goes on.
    Returns the running `Ticker`. Raises ValueError if ``interval`` is not positive, RuntimeError
    without a running loop.
    """
    if not interval > 0:
        raise ValueError(f"every(): interval must be positive, not {interval}")
    return Ticker(interval, fn, args, name or f"every-{_label(fn)}")
