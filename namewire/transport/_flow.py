"""Write flow control shared by every stream protocol: pause/resume bookkeeping and `drain`."""

from __future__ import annotations

import asyncio

__all__ = ["WriteFlow"]


class WriteFlow:
    """Tracks the transport's pause_writing/resume_writing calls and parks writers until drain.

    Protocols forward ``pause_writing``, ``resume_writing`` and ``connection_lost`` here. `drain`
    returns at once while writing is not paused, so a sender pays for a future only above the
    high-water mark.
    """

    __slots__ = ("_closed_exc", "_loop", "_waiters", "paused")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.paused = False
        self._waiters: list[asyncio.Future[None]] = []  # a list: far smaller than a deque
        self._closed_exc: BaseException | None = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def close(self, exc: BaseException) -> None:
        """The connection is gone: wake every parked writer with ``exc``."""
        self._closed_exc = exc
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)

    async def drain(self) -> None:
        if self._closed_exc is not None:
            raise self._closed_exc
        if not self.paused:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter
