"""`run`: the entry point that owns the event loop of a namewire program."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._spawn import stop_processes

__all__ = ["new_event_loop", "run"]

T = TypeVar("T")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None, grace: float = 5.0) -> T | None:
    """Run ``main`` to completion on a fresh loop (uvloop where available) and close the loop.

    SIGINT and SIGTERM cancel ``main``; whatever cleanup it does in ``finally`` / ``async with`` runs.
    Once ``main`` has ended (returned, raised or been stopped), the light processes started with
    `spawn` that are still running are cancelled newest first, each awaited in turn, within ``grace``
    seconds in all (`stop_processes`); a second signal during that time ends the wait. Then the loop
    shuts down (remaining tasks cancelled, async generators closed, executor joined).
    Returns ``main``'s result, or None when a signal stopped it and it let the cancellation through;
    an exception from ``main`` propagates after the shutdown.
    """
    with asyncio.Runner(loop_factory=_loop_factory(), debug=debug) as runner:
        return runner.run(_stoppable(main, grace))


async def _stoppable(main: Coroutine[Any, Any, T], grace: float) -> T | None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopped_by: list[int] = []

    def stop(signum: int) -> None:
        stopped_by.append(signum)
        if len(stopped_by) == 1:
            task.cancel()
        elif shutdown is not None:
            shutdown.cancel()  # a second signal: stop waiting for the light processes

    shutdown: asyncio.Task[None] | None = None

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
        # Undo the cancel request our own handler made, so shutdown code after us is not cancelled.
        task.uncancel()
        return None
    finally:
        shutdown = loop.create_task(stop_processes(grace), name="namewire-shutdown")
        try:
            await asyncio.wait([shutdown])
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
