"""`fork`: start a worker (a new interpreter in a new process, or a thread with its own loop), and
`Worker`, its handle.

Processes are started with multiprocessing's ``spawn`` (the default) or ``forkserver`` method, never
a plain ``fork``: a child forked from a process whose event loop, C reactor or threads are running
inherits their state half-way (locks held by threads that do not exist in the child, the reactor's
epoll set). ``spawn`` costs a fresh interpreter start (about 0.1-0.3 s); ``forkserver`` forks from a
clean server process started once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Literal, Self

from ..errors import WorkerExited
from ..runtime import run
from ._channel import ChannelEnd, WorkerChannel
from ._child import WorkerSpec, process_main, run_target

__all__ = ["StartMethod", "Worker", "fork"]

StartMethod = Literal["spawn", "forkserver"]

log = logging.getLogger("namewire.workers")
_counter = itertools.count(1)
# After the sentinel shows the exit, waitpid may need a moment to see the zombie.
_REAP_POLL = 0.002


class Worker:
    """Handle of a worker started by `fork`.

    ``name`` is the worker's name, ``pid`` its process id (None for a thread), ``exitcode`` None
    while it runs, then its exit status: 0 after its target returned, 1 after it raised, the code of
    a ``sys.exit``, or minus the signal number that killed it (multiprocessing's convention).
    ``async with`` stops the worker on leaving the block.
    """

    def __init__(self, name: str, *, thread: bool) -> None:
        self.name = name
        self.thread = thread
        self.pid: int | None = None
        self.error: str | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._process: Any = None
        self._watchdog: socket.socket | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_task: asyncio.Task[Any] | None = None

    def __repr__(self) -> str:
        state = "running" if self.exitcode is None else f"exited {self.exitcode}"
        where = f"pid {self.pid}" if self.pid is not None else "thread"
        return f"<Worker {self.name!r} {where} {state}>"

    @property
    def exitcode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    def is_alive(self) -> bool:
        return not self._exited.done()

    async def wait(self) -> int:
        """Wait until the worker has ended and return its `exitcode` (the process is reaped)."""
        return await asyncio.shield(self._exited)

    def terminate(self) -> None:
        """Ask the worker to stop: SIGTERM to a process (its target is cancelled, its cleanup
        runs), cancellation of a thread's target."""
        if self._exited.done():
            return
        if self._process is not None:
            self._process.terminate()
        elif self._thread_loop is not None and self._thread_task is not None:
            self._thread_loop.call_soon_threadsafe(self._thread_task.cancel)

    def kill(self) -> None:
        """SIGKILL to a process. A thread cannot be killed: this cancels its target, as `terminate`."""
        if self._exited.done():
            return
        if self._process is not None:
            self._process.kill()
        else:
            self.terminate()

    async def stop(self, grace: float = 5.0) -> int:
        """`terminate`, wait up to ``grace`` seconds, then `kill`; return the exit code."""
        if not self._exited.done():
            self.terminate()
            try:
                async with asyncio.timeout(grace):
                    return await self.wait()
            except TimeoutError:
                log.warning("worker %r did not stop within %.1f s; killing it", self.name, grace)
                self.kill()
        return await self.wait()

    def exit_error(self, channel: str = "") -> WorkerExited:
        """The `WorkerExited` that describes how the worker ended (it must have ended)."""
        code = self._exited.result()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return WorkerExited(channel, self.name, self.pid, None, name, self.error)
        return WorkerExited(channel, self.name, self.pid, code, None, self.error)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # -- starting ---------------------------------------------------------------------------------

    def _start_process(self, spec: WorkerSpec, start_method: StartMethod) -> None:
        ours, theirs = socket.socketpair()  # the parent-death watchdog: EOF when we are gone
        spec.watchdog = theirs
        spec.direct_child = start_method == "spawn"
        context: Any = multiprocessing.get_context(start_method)
        # daemon: multiprocessing terminates the worker when this interpreter exits normally.
        process = context.Process(target=process_main, args=(spec,), name=self.name, daemon=True)
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._process = process
        self._watchdog = ours
        self.pid = process.pid
        self._loop.add_reader(process.sentinel, self._sentinel_ready)

    def _sentinel_ready(self) -> None:
        self._loop.remove_reader(self._process.sentinel)
        self._reap()

    def _reap(self) -> None:
        process = self._process
        code = process.exitcode
        if code is None:
            self._loop.call_later(_REAP_POLL, self._reap)
            return
        process.close()
        if self._watchdog is not None:
            self._watchdog.close()
        if code == 1 and self.error is None:
            self.error = "its target raised; the traceback is in its log"
        self._set_exit(code)

    def _start_thread(self, spec: WorkerSpec) -> None:
        def started(channels: list[WorkerChannel[Any]]) -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_task = asyncio.current_task()

        def main() -> None:
            code = 0
            try:
                run(run_target(spec, started))
            except BaseException as exc:
                code = 1
                self.error = f"{type(exc).__name__}: {exc}"
                log.error("worker %r (thread) raised %s", self.name, self.error,
                          exc_info=(type(exc), exc, exc.__traceback__))
            with contextlib.suppress(RuntimeError):  # the parent's loop closed before we ended
                self._loop.call_soon_threadsafe(self._set_exit, code)

        thread = threading.Thread(target=main, name=self.name, daemon=True)
        thread.start()

    def _set_exit(self, code: int) -> None:
        if not self._exited.done():
            self._exited.set_result(code)


async def fork(
    target: Callable[..., Coroutine[Any, Any, Any]],
    /,
    *args: Any,
    name: str | None = None,
    thread: bool = False,
    start_method: StartMethod = "spawn",
    **kwargs: Any,
) -> Worker:
    """Start ``target(*args, **kwargs)`` (an async function) in a worker and return its `Worker`.

    By default the worker is a new process (an independent interpreter) with its own namewire
    runtime (`namewire.run`: uvloop, SIGTERM stops it cleanly); ``start_method`` is ``"spawn"`` or
    ``"forkserver"``. The target must then be importable by name (a module-level function), and
    ``args``/``kwargs`` picklable. ``thread=True`` runs it in a thread with its own event loop
    instead, for blocking libraries; arguments are passed as they are.

    Each `WorkerChannel` among the arguments is linked to the new worker: the target receives its
    end of it. The worker dies with its parent (see ``_child.py``). Raises TypeError for a target
    that is not an async function or cannot be sent to a process, ValueError for a channel that is
    already linked to a running worker.
    """
    if not inspect.iscoroutinefunction(target):
        raise TypeError(f"fork() needs an async function, not {target!r}")
    label = getattr(target, "__qualname__", type(target).__name__)
    name = name or f"{label}-{next(_counter)}"
    links: list[tuple[WorkerChannel[Any], socket.socket, ChannelEnd]] = []

    for value in (*args, *kwargs.values()):
        if isinstance(value, WorkerChannel):
            await value.settle()  # given again after the previous worker ended (a restart)

    def end_of(value: Any) -> Any:
        if isinstance(value, WorkerChannel):
            ours, end = value.far_end()
            links.append((value, ours, end))
            return end
        return value

    worker = Worker(name, thread=thread)
    try:
        spec = WorkerSpec(target, tuple(end_of(a) for a in args),
                          {k: end_of(v) for k, v in kwargs.items()}, name, os.getpid(), None)
        if thread:
            worker._start_thread(spec)
        else:
            try:
                worker._start_process(spec, start_method)
            except (pickle.PicklingError, AttributeError, TypeError) as exc:
                raise TypeError(
                    f"fork({label}): cannot send the target and its arguments to a new process "
                    f"({exc}); use a module-level async function and picklable arguments, or "
                    "thread=True"
                ) from exc
    except BaseException:
        for _, ours, end in links:
            ours.close()
            end.sock.close()
        raise
    if not thread:
        for _, _, end in links:
            end.sock.close()  # the child has its copy; ours would hide its EOF from us

    linked = 0
    try:
        for channel, ours, end in links:

            async def gone(channel_name: str = end.name) -> WorkerExited:
                await worker.wait()
                return worker.exit_error(channel_name)

            await channel._link(ours, peer_gone=gone, peer_alive=worker.is_alive)
            linked += 1
    except BaseException:
        for _, ours, _ in links[linked + 1 :]:
            ours.close()
        await worker.stop(grace=1.0)  # a worker we could not link is of no use to anyone
        raise
    return worker
