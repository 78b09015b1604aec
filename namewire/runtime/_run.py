"""`run`: the entry point that owns the event loop of a namewire program."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._gc import GC_YOUNG_THRESHOLD, young_generation_threshold
from ._spawn import stop_processes

__all__ = ["new_event_loop", "run", "stop_waiting"]

T = TypeVar("T")

log = logging.getLogger("namewire.runtime")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stop_waiting: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}


def stop_waiting() -> asyncio.Event:
    """An event of the running loop that `run` sets at a second SIGINT/SIGTERM.

    Shutdown code that waits (a `Node` giving its calls in flight their grace period) waits for it
    too, and stops waiting once it is set.
    """
    loop = asyncio.get_running_loop()
    event = _stop_waiting.get(loop)
    if event is None:
        event = _stop_waiting[loop] = asyncio.Event()
    return event


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop where uvloop is installed (Linux, macOS), the standard asyncio loop elsewhere."""
    return _loop_factory()()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    if sys.platform != "win32":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def run(
    main: Coroutine[Any, Any, T],
    *,
    debug: bool | None = None,
    grace: float = 5.0,
    gc_threshold: int | None = GC_YOUNG_THRESHOLD,
) -> T | None:
    """Run ``main`` to completion on a fresh loop (uvloop where available) and close the loop.

    SIGINT and SIGTERM cancel ``main``; whatever cleanup it does in ``finally`` / ``async with`` runs.
    Once ``main`` has ended (returned, raised or been stopped), the light processes started with
    `spawn` that are still running are cancelled newest first, each awaited in turn, within ``grace``
    seconds in all (`stop_processes`). A second signal ends whatever waiting is under way: it
    cancels ``main`` again while ``main`` is still cleaning up (a `Node` stopping then gives up
    waiting for the calls in flight), and ends the wait for the light processes after. Then the
    loop shuts down (remaining tasks cancelled, async generators closed, executor joined). Each
    signal is logged (INFO, then WARNING). Returns ``main``'s result, or None when a signal stopped
    it; a signal that arrives as ``main`` returns is no error. An exception from ``main``
    propagates after the shutdown.

    While it runs, the garbage collector's youngest generation is collected after ``gc_threshold``
    allocations instead of CPython's 700 (`namewire.runtime._gc`: calls in flight made the
    collector a sixth of a busy caller's CPU); None leaves the collector as it is.
    """
    with young_generation_threshold(gc_threshold), asyncio.Runner(
        loop_factory=_loop_factory(), debug=debug
    ) as runner:
        return runner.run(_stoppable(main, grace))


async def _stoppable(main: Coroutine[Any, Any, T], grace: float) -> T | None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopped_by: list[int] = []
    main_running = True
    shutdown: asyncio.Task[None] | None = None

    def stop(signum: int) -> None:
        stopped_by.append(signum)
        name = signal.Signals(signum).name
        if len(stopped_by) == 1:
            log.info("%s received: stopping (a second signal ends the waiting)", name)
        else:
            log.warning("%s received again: not waiting any longer", name)
            stop_waiting().set()
        if main_running:
            task.cancel()  # again, on a second signal: ends the wait main's cleanup is in
        elif len(stopped_by) > 1 and shutdown is not None:
            shutdown.cancel()  # stop waiting for the light processes

    installed = []
    for signum in _STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, stop, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or a platform without loop signal handlers
    try:
        return await main
    except asyncio.CancelledError:
        if not stopped_by:
            raise
        _uncancel(task)  # our own requests: shutdown code after us must not be cancelled
        return None
    finally:
        main_running = False
        shutdown = loop.create_task(stop_processes(grace), name="namewire-shutdown")
        try:
            while not shutdown.done():
                try:
                    await asyncio.wait([shutdown])
                except asyncio.CancelledError:
                    # A signal's cancel that main returned before receiving: not an error, but
                    # a request to stop waiting. Anyone else's cancel goes through.
                    if not stopped_by:
                        raise
                    _uncancel(task)
                    shutdown.cancel()
        finally:
            _stop_waiting.pop(loop, None)
            for signum in installed:
                loop.remove_signal_handler(signum)


def _uncancel(task: asyncio.Task[Any]) -> None:
    while task.uncancel() > 0:
        pass
