"""`ConnectionThread`: one DB-API connection and the one thread that opens, uses and closes it.

A connection never changes threads, so drivers with thread affinity (sqlite3's
``check_same_thread``, on by default) need no relaxing, and a driver whose connections are not
thread-safe is safe. Jobs run one at a time in the order they were submitted; each job's outcome
is handed back to the event loop with one ``call_soon_threadsafe``.

A job's completion is a separate fact from its caller's future: a caller may be cancelled and stop
waiting, but the job still runs to its end on the thread, and its ``then`` callback (which gives
the connection back to the pool) runs only then. That is what keeps a cancelled caller from
handing a connection in the middle of a statement, or of a transaction, to the next user.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["ConnectionThread", "Job"]

log = logging.getLogger("namewire.db")
T = TypeVar("T")


class Job(Generic[T]):
    """One piece of work for a connection's thread.

    ``future`` is what the caller awaits (it may be cancelled); ``then``, when set, runs on the loop
    once the work has finished on the thread, whatever became of the future. ``finished`` turns
    True at that moment.
    """

    __slots__ = ("error", "finished", "fn", "future", "result", "then")

    def __init__(
        self,
        fn: Callable[[ConnectionThread], T],
        future: asyncio.Future[T],
        then: Callable[[Job[T]], None] | None,
    ) -> None:
        self.fn = fn
        self.future = future
        self.then = then
        self.finished = False
        self.result: T | None = None
        self.error: BaseException | None = None


class ConnectionThread:
    """A thread that owns one connection. Create it on the loop; `submit` jobs from the loop only.

    ``connection`` is set by the open job and used only on the thread. ``broken`` is set (on the
    thread) when the connection cannot be trusted any more, for example a rollback that failed; the
    pool then closes it instead of lending it again.
    """

    __slots__ = ("_jobs", "_loop", "_thread", "broken", "connection", "name")

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[Job[Any] | None] = queue.SimpleQueue()
        self.connection: Any = None
        self.broken = False
        self.name = name
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[ConnectionThread], T],
        then: Callable[[Job[T]], None] | None = None,
    ) -> Job[T]:
        """Queue ``fn(self)`` to run on the thread; returns its `Job` (await ``job.future``)."""
        job = Job(fn, self._loop.create_future(), then)
        self._jobs.put(job)
        return job

    def interrupt(self, job: Job[Any], how: Callable[[Any], None] | None) -> None:
        """Ask the driver (``how``) to stop ``job``'s statement, if it is still running."""
        if how is not None and not job.finished and self.connection is not None:
            try:
                how(self.connection)
            except Exception as exc:  # noqa: BLE001 -- the statement then runs to its end
                log.debug("namewire.db: cannot interrupt a statement on %s: %s", self.name, exc)

    def stop(self) -> Job[None]:
        """Close the connection on the thread, then end the thread. Returns the closing job."""
        job = self.submit(_close)
        self._jobs.put(None)
        return job

    def _main(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                result, error = job.fn(self), None
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller, never lost
                result, error = None, exc
            try:
                self._loop.call_soon_threadsafe(_complete, job, result, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                if self.connection is not None:
                    _close(self)
                return


def _complete(job: Job[Any], result: Any, error: BaseException | None) -> None:
    job.finished = True
    job.result, job.error = result, error
    if job.then is not None:
        job.then(job)
    future = job.future
    if not future.done():
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _close(thread: ConnectionThread) -> None:
    connection, thread.connection = thread.connection, None
    if connection is not None:
        connection.close()
