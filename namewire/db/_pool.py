"""`Pool`: at most ``size`` connection threads, opened on demand, each lent to one user at a time.

A user gets a `ConnectionThread` from `acquire` and gives it back with `release` once its last job
has finished on the thread (not when the user stops waiting: see `_thread`). Waiters are served in
arrival order. A thread marked ``broken`` is closed on release and its slot goes to the next
waiter, who opens a fresh connection.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DatabaseError
from ._thread import ConnectionThread, Job

__all__ = ["Pool", "PoolStatistics"]

log = logging.getLogger("namewire.db")
_serial = itertools.count(1)


@dataclass(frozen=True)
class PoolStatistics:
    """A snapshot of a pool: ``size`` (its bound), ``open`` connections (opening ones included),
    ``idle`` ones, ``in_use`` ones (lent out, or finishing a cancelled caller's work) and
    ``waiting`` callers."""

    size: int
    open: int
    idle: int
    in_use: int
    waiting: int


class Pool:
    """Connection threads for one database. ``open_one(thread)`` runs on a new thread and must
    set ``thread.connection``; ``label`` names the database in errors and thread names."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        size: int,
        open_one: Callable[[ConnectionThread], None],
        label: str,
    ) -> None:
        if size < 1:
            raise ValueError(f"namewire.db pool size must be at least 1, not {size}")
        self.size = size
        self._loop = loop
        self._open_one = open_one
        self._label = label
        self._idle: list[ConnectionThread] = []
        self._waiters: collections.deque[asyncio.Future[ConnectionThread | None]] = (
            collections.deque()
        )
        self._opened = 0
        self._closed = False
        self._stopping: set[asyncio.Future[None]] = set()
        self._drained = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> PoolStatistics:
        idle = len(self._idle)
        waiting = sum(1 for w in self._waiters if not w.done())
        return PoolStatistics(self.size, self._opened, idle, self._opened - idle, waiting)

    async def acquire(self, operation: str) -> ConnectionThread:
        """A connection thread for the caller alone; waits while all ``size`` are lent out.

        Raises `DatabaseError` when the pool is closed, or when opening a connection failed.
        """
        if self._closed:
            raise DatabaseError(operation, self._label, reason="the database is closed")
        if self._idle:
            return self._idle.pop()
        if self._opened < self.size:
            return await self._open()
        waiter: asyncio.Future[ConnectionThread | None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            thread = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection (or a free slot) just as we were cancelled: pass it on.
                got = waiter.result()
                if got is None:
                    self._pass_slot()
                else:
                    self.release(got)
            raise
        return thread if thread is not None else await self._open()

    def release(self, thread: ConnectionThread) -> None:
        """Give a connection back; its jobs must all have finished."""
        if thread.broken or self._closed:
            self._forget(thread)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(thread)
                return
        self._idle.append(thread)

    async def close(self) -> None:
        """Refuse new users, close idle connections, wait for lent ones to come back and close
        them. Callers waiting for a connection get `DatabaseError`."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(
                    DatabaseError("acquire", self._label, reason="the database was closed")
                )
        while self._idle:
            self._forget(self._idle.pop())
        if self._opened:
            await self._drained.wait()
        if self._stopping:
            await asyncio.wait(self._stopping)

    async def _open(self) -> ConnectionThread:
        self._opened += 1
        thread = ConnectionThread(self._loop, f"namewire.db({self._label})#{next(_serial)}")
        job = thread.submit(self._open_one)
        try:
            await job.future
        except asyncio.CancelledError:
            # The connect goes on on its thread; whoever comes next gets its outcome.
            if job.finished:
                self._opened_late(thread, job)
            else:
                job.then = lambda done: self._opened_late(thread, done)
            raise
        except BaseException:
            self._forget(thread)
            raise
        return thread

    def _opened_late(self, thread: ConnectionThread, job: Job[Any]) -> None:
        if job.error is None:
            self.release(thread)
        else:
            self._forget(thread)

    def _forget(self, thread: ConnectionThread) -> None:
        self._opened -= 1
        stopping = thread.stop().future
        self._stopping.add(stopping)
        stopping.add_done_callback(self._stopped)
        if self._closed:
            if self._opened == 0:
                self._drained.set()
        else:
            self._pass_slot()

    def _stopped(self, future: asyncio.Future[None]) -> None:
        self._stopping.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.warning("namewire.db: closing a connection to %s failed: %s", self._label, exc)

    def _pass_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
