"""`ConnectionThread`: one DB-API connection and the one thread that opens, uses and closes it.

A connection never changes threads, so drivers with thread affinity (sqlite3's
``check_same_thread``, on by default) need no relaxing, and a driver whose connections are not
thread-safe is safe. Jobs run one at a time in the order they were submitted; each job's outcome
is handed back to the event loop with one ``call_soon_threadsafe``.

A job's completion is a separate fact from its caller's future: a caller may be cancelled and stop
waiting, but a job that has started runs to its end on the thread (or until the driver interrupts
it), and its ``then`` callback (which tells the pool) runs only then. That is what keeps a
cancelled caller from handing a connection in the middle of a statement, or of a transaction, to
the next user. A cancelled job that has not started yet is skipped.
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

    __slots__ = ("error", "finished", "fn", "future", "result", "skipped", "started", "then")

    def __init__(
        self,
        fn: Callable[[ConnectionThread], T],
        future: asyncio.Future[T],
        then: Callable[[Job[T]], None] | None,
    ) -> None:
        self.fn = fn
        self.future = future
        self.then = then
        self.started = False
        self.skipped = False
        self.finished = False
        self.result: T | None = None
        self.error: BaseException | None = None


class ConnectionThread:
    """A thread that owns one connection. Create it on the loop; `submit` jobs from the loop only.

    ``connection`` is set by the open job and used only on the thread. ``broken`` is set (on the
    thread) when the connection cannot be trusted any more, for example a rollback that failed; the
    pool then closes it instead of using it again. ``queued`` (statements in flight) and ``lent``
    (held by a transaction) are the pool's bookkeeping, kept on the loop.
    """

    __slots__ = (
        "_current", "_jobs", "_lock", "_loop", "_thread", "broken", "connection", "lent", "name",
        "queued",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[Job[Any] | None] = queue.SimpleQueue()
        self.connection: Any = None
        self.broken = False
        self.queued = 0
        self.lent = False
        self.name = name
        # Guards which job runs, so that an interrupt meant for one job never reaches the next.
        self._lock = threading.Lock()
        self._current: Job[Any] | None = None
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

    def cancel(self, job: Job[Any], interrupt: Callable[[Any], None] | None) -> None:
        """Its caller gave up on ``job``: skip it if it has not started; if it is running, ask the
        driver to stop it (``interrupt``, None when the driver cannot: it then runs to its end)."""
        with self._lock:
            if not job.started:
                job.skipped = True
            elif self._current is job and interrupt is not None:
                try:
                    interrupt(self.connection)
                except Exception as exc:  # noqa: BLE001 -- the statement then runs to its end
                    log.debug("namewire.db: cannot interrupt a statement on %s: %s", self.name, exc)

    def stop(self) -> Job[None]:
        """Close the connection on the thread, then end the thread. Returns the closing job."""
        job = self.submit(_close)
        self._jobs.put(None)
        return job

    def _main(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                run = not job.skipped
                job.started = run
                self._current = job if run else None
            result: Any = None
            error: BaseException | None = None
            if run:
                try:
                    result = job.fn(self)
                except BaseException as exc:  # noqa: BLE001 -- handed to the caller, never lost
                    error = exc
                with self._lock:
                    self._current = None
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
