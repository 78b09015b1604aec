"""`Pool`: at most ``size`` connection threads, opened on demand, shared by statements and lent to
transactions.

A statement on its own is a self-contained job (it commits or rolls back before the next job on
its thread starts), so several may queue on one connection: up to ``depth`` at a time, on the
least busy one, a fresh connection being opened first while there is room for one. The thread
then goes from one job to the next without sleeping in between, instead of waiting for the event
loop to hand the connection to the next caller. A transaction gets a connection to itself
(``exclusive``): one with nothing queued, which takes no statements but the transaction's until
the transaction has ended on its thread.

Callers that find no room wait in one line, first come first served: a transaction at the head
of the line stops statements from queueing past it, so it cannot be starved. A thread marked
``broken`` is closed as soon as nothing runs on it, and its slot goes to the line.
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

__all__ = ["DEPTH", "Pool", "PoolStatistics"]

log = logging.getLogger("namewire.db")
_serial = itertools.count(1)

DEPTH = 4
"""Statements queued on one connection at most (the running one included)."""


@dataclass(frozen=True)
class PoolStatistics:
    """A snapshot of a pool. ``size``: its bound; ``open``: connections, opening ones included;
    ``idle``: open ones with nothing to do; ``in_use``: the others (running or queued statements,
    or lent to a transaction); ``transactions``: connections lent to one; ``queued``: statements
    on connections, running or next in line; ``waiting``: callers waiting for room."""

    size: int
    open: int
    idle: int
    in_use: int
    transactions: int
    queued: int
    waiting: int


class _Waiter:
    __slots__ = ("exclusive", "future")

    def __init__(self, future: asyncio.Future[ConnectionThread | None], exclusive: bool) -> None:
        self.future = future
        self.exclusive = exclusive


class Pool:
    """Connection threads for one database. ``open_one(thread)`` runs on a new thread and must
    set ``thread.connection``; ``label`` names the database in errors and thread names."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        size: int,
        open_one: Callable[[ConnectionThread], None],
        label: str,
        depth: int = DEPTH,
    ) -> None:
        if size < 1:
            raise ValueError(f"namewire.db pool size must be at least 1, not {size}")
        self.size = size
        self.depth = depth
        self._loop = loop
        self._open_one = open_one
        self._label = label
        self._threads: list[ConnectionThread] = []  # open ones
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._opened = 0  # open, opening, or a slot promised to a waiter
        self._closed = False
        self._stopping: set[asyncio.Future[None]] = set()
        self._drained = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> PoolStatistics:
        idle = sum(1 for t in self._threads if not t.lent and not t.queued)
        return PoolStatistics(
            size=self.size,
            open=self._opened,
            idle=idle,
            in_use=self._opened - idle,
            transactions=sum(1 for t in self._threads if t.lent),
            queued=sum(t.queued for t in self._threads),
            waiting=sum(1 for w in self._waiters if not w.future.done()),
        )

    async def acquire(self, operation: str, *, exclusive: bool) -> ConnectionThread:
        """A connection for one statement (give it back with `finished` once the job has ended on
        its thread) or, ``exclusive``, for a transaction (give it back with `returned`).

        Raises `DatabaseError` when the pool is closed, or when opening a connection failed.
        """
        if self._closed:
            raise DatabaseError(operation, self._label, reason="the database is closed")
        if not self._waiters:
            thread = self._pick(exclusive)
            if thread is not None and (thread.queued == 0 or self._opened >= self.size):
                return self._claim(thread, exclusive)
            if self._opened < self.size:
                self._opened += 1
                return await self._open(exclusive)
        waiter = _Waiter(self._loop.create_future(), exclusive)
        self._waiters.append(waiter)
        try:
            got = await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                # Served just as we were cancelled: give back what we were given.
                if (handed := future.result()) is None:
                    self._opened -= 1
                    self._serve()
                else:
                    self._unclaim(handed, exclusive)
            raise
        return got if got is not None else await self._open(exclusive)

    def finished(self, thread: ConnectionThread) -> None:
        """One statement queued on ``thread`` has ended on its thread."""
        thread.queued -= 1
        self._changed(thread)

    def returned(self, thread: ConnectionThread) -> None:
        """The transaction that held ``thread`` has ended on its thread."""
        thread.lent = False
        self._changed(thread)

    async def close(self) -> None:
        """Refuse new users, close idle connections, wait for busy ones to finish and close them.
        Callers waiting for room get `DatabaseError`."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(
                    DatabaseError("acquire", self._label, reason="the database was closed")
                )
        for thread in [t for t in self._threads if not t.lent and not t.queued]:
            self._discard(thread)
        if self._opened:
            await self._drained.wait()
        if self._stopping:
            await asyncio.wait(self._stopping)

    def _pick(self, exclusive: bool) -> ConnectionThread | None:
        """The least busy usable connection: for a transaction one with nothing queued."""
        best: ConnectionThread | None = None
        for thread in self._threads:
            if thread.lent or thread.broken or thread.queued >= self.depth:
                continue
            if thread.queued == 0:
                return thread
            if not exclusive and (best is None or thread.queued < best.queued):
                best = thread
        return best

    def _claim(self, thread: ConnectionThread, exclusive: bool) -> ConnectionThread:
        if exclusive:
            thread.lent = True
        else:
            thread.queued += 1
        return thread

    def _unclaim(self, thread: ConnectionThread, exclusive: bool) -> None:
        if exclusive:
            self.returned(thread)
        else:
            self.finished(thread)

    def _changed(self, thread: ConnectionThread) -> None:
        if not thread.lent and not thread.queued and (thread.broken or self._closed):
            self._discard(thread)
        self._serve()

    def _serve(self) -> None:
        """Serve the line in order while there is room for its head."""
        while self._waiters and not self._closed:
            waiter = self._waiters[0]
            if waiter.future.done():  # cancelled
                self._waiters.popleft()
                continue
            thread = self._pick(waiter.exclusive)
            if thread is not None and (thread.queued == 0 or self._opened >= self.size):
                self._waiters.popleft()
                waiter.future.set_result(self._claim(thread, waiter.exclusive))
            elif self._opened < self.size:
                self._waiters.popleft()
                self._opened += 1  # the slot is the waiter's: it opens the connection
                waiter.future.set_result(None)
            else:
                return

    async def _open(self, exclusive: bool) -> ConnectionThread:
        """Open a connection in a slot already counted in ``_opened``, and claim it."""
        thread = ConnectionThread(self._loop, f"namewire.db({self._label})#{next(_serial)}")
        job = thread.submit(self._open_one)
        try:
            await job.future
        except asyncio.CancelledError:
            # The connect goes on on its thread; the line gets its outcome.
            if job.finished:
                self._opened_late(thread, job)
            else:
                job.then = lambda done: self._opened_late(thread, done)
            raise
        except BaseException:
            self._forget(thread)
            raise
        self._threads.append(thread)
        self._claim(thread, exclusive)
        self._serve()  # room for those who queued up meanwhile
        return thread

    def _opened_late(self, thread: ConnectionThread, job: Job[Any]) -> None:
        if job.error is not None:
            self._forget(thread)
        else:
            self._threads.append(thread)
            self._changed(thread)

    def _discard(self, thread: ConnectionThread) -> None:
        self._threads.remove(thread)
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
            self._serve()

    def _stopped(self, future: asyncio.Future[None]) -> None:
        self._stopping.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.warning("namewire.db: closing a connection to %s failed: %s", self._label, exc)
