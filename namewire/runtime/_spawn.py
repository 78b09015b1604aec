"""Light processes: named, supervised asyncio tasks whose failures are always logged.

`spawn` wraps `asyncio.Task` with three promises: the task has a name (also visible to logging as
``record.process_name``), an exception that ends it is logged with that name and its traceback even if
nobody awaits it, and `run` can find it at shutdown to stop it in reverse start order
(`stop_processes`).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar, overload

from ._context import _set_process_name

__all__ = ["Process", "running_processes", "spawn", "stop_processes"]

T = TypeVar("T")

logger = logging.getLogger("namewire.runtime")

# Live processes per loop, in start order (dicts keep insertion order). Weak on the loop so a closed
# loop's table goes with it.
_live: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Process[Any], None]] = (
    weakref.WeakKeyDictionary()
)
_counter = itertools.count(1)


class Process(Generic[T]):
    """Handle of a light process started by `spawn`.

    Awaiting it returns the coroutine's result or raises its exception (`asyncio.CancelledError` if it
    was cancelled). ``task`` is the underlying `asyncio.Task`.
    """

    __slots__ = ("__weakref__", "name", "task")

    def __init__(self, name: str, task: asyncio.Task[T]) -> None:
        self.name = name
        self.task = task

    def cancel(self, msg: str | None = None) -> bool:
        """Ask the process to stop; False if it had already finished. It stops at its next await."""
        return self.task.cancel(msg)

    def done(self) -> bool:
        """True once the process returned, raised or was cancelled."""
        return self.task.done()

    def cancelled(self) -> bool:
        """True if the process ended by cancellation."""
        return self.task.cancelled()

    def result(self) -> T:
        """The return value; raises what the process raised, `asyncio.InvalidStateError` if running."""
        return self.task.result()

    def __await__(self) -> Generator[Any, None, T]:
        return self.task.__await__()

    def __repr__(self) -> str:
        state = "done" if self.task.done() else "running"
        return f"<Process {self.name!r} {state}>"


@overload
def spawn(coro_or_fn: Coroutine[Any, Any, T], /, *, name: str | None = None) -> Process[T]: ...
@overload
def spawn(
    coro_or_fn: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, name: str | None = None
) -> Process[T]: ...
def spawn(coro_or_fn: Any, /, *args: Any, name: str | None = None) -> Process[Any]:
    """Start a light process on the running loop and return its `Process` handle.

    ``coro_or_fn`` is a coroutine, or an async function called as ``coro_or_fn(*args)`` inside the new
    process's context (so its own log records already carry the process name). ``name`` defaults to the
    function's qualified name plus a sequence number.

    An exception other than cancellation that ends the process is logged at ERROR on the
    ``namewire.runtime`` logger with the name and traceback, and stays available to whoever awaits it.

    Raises RuntimeError without a running loop, TypeError if ``coro_or_fn`` is neither a coroutine nor
    a callable returning one, or if arguments come with a coroutine.
    """
    loop = asyncio.get_running_loop()
    if asyncio.iscoroutine(coro_or_fn):
        if args:
            raise TypeError("spawn(): arguments given with a coroutine; pass the function instead")
        label = getattr(coro_or_fn, "__qualname__", type(coro_or_fn).__name__)
    elif callable(coro_or_fn):
        label = getattr(coro_or_fn, "__qualname__", type(coro_or_fn).__name__)
    else:
        raise TypeError(f"spawn() needs a coroutine or an async function, not {coro_or_fn!r}")
    if name is None:
        name = f"{label}-{next(_counter)}"
    ctx = contextvars.copy_context()
    ctx.run(_set_process_name, name)
    if asyncio.iscoroutine(coro_or_fn):
        coro = coro_or_fn
    else:
        coro = ctx.run(coro_or_fn, *args)
        if not asyncio.iscoroutine(coro):
            raise TypeError(
                f"spawn(): {label} returned {type(coro).__name__}, not a coroutine; "
                "a light process must be an async function"
            )
    task = loop.create_task(coro, name=name, context=ctx)
    process: Process[Any] = Process(name, task)
    table = _live.setdefault(loop, {})
    table[process] = None
    task.add_done_callback(lambda t: _finished(loop, process), context=ctx)
    return process


def _finished(loop: asyncio.AbstractEventLoop, process: Process[Any]) -> None:
    table = _live.get(loop)
    if table is not None:
        table.pop(process, None)
    task = process.task
    if task.cancelled():
        return
    exc = task.exception()  # retrieving it also silences asyncio's "never retrieved" warning
    if exc is not None:
        logger.error(
            "light process %r crashed: %s: %s",
            process.name,
            type(exc).__name__,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )


def running_processes() -> list[Process[Any]]:
    """The light processes still running on this loop, oldest first."""
    loop = asyncio.get_running_loop()
    return list(_live.get(loop, {}))


async def stop_processes(grace: float = 5.0) -> None:
    """Cancel every light process still running on this loop, newest first, each awaited in turn.

    Stopping in reverse start order lets a process outlive the ones it started or serves, as an Erlang
    supervisor shuts its children down. ``grace`` bounds the whole shutdown in seconds: once spent, the
    remaining processes are cancelled without waiting, and those that have not finished are logged at
    WARNING. Processes spawned during the shutdown are stopped too. The calling task is never cancelled.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(grace, 0.0)
    me = asyncio.current_task()
    lingering: list[Process[Any]] = []
    seen: set[Process[Any]] = set()
    while True:
        pending = [p for p in reversed(_live.get(loop, {})) if p.task is not me and p not in seen]
        if not pending:
            break
        for process in pending:
            seen.add(process)
            process.cancel()
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.wait([process.task], timeout=remaining)
            if not process.done():
                lingering.append(process)
    for process in lingering:
        if not process.done():
            logger.warning(
                "light process %r did not stop within the %.1f s grace period", process.name, grace
            )
