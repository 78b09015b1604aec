"""What runs inside a worker: die with the parent, open the channel ends, run the target.

A worker process must not outlive its parent. Two guards, because each alone has a gap:

- ``PR_SET_PDEATHSIG`` (Linux, through ctypes): the kernel sends SIGTERM when the parent dies. It
  fires when the parent *thread* that started us ends, and not at all if the parent died before
  we set it; so we also compare ``getppid()`` with the parent's pid right after setting it.
  Only for ``spawn``: under ``forkserver`` our parent is the fork server, not the process that
  asked for us, so this guard does not apply there.
- a watchdog thread blocked reading a socket whose other end only the parent holds: EOF means
  the parent is gone. It asks the loop to stop (SIGTERM to ourselves) and, if the process is
  still there after the grace period (a target that blocks the loop), ends it with ``os._exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import ChannelBroken
from ..runtime import run
from ._channel import ChannelEnd, WorkerChannel

__all__ = ["ORPHAN_EXIT", "WorkerSpec", "process_main", "run_target"]

_PR_SET_PDEATHSIG = 1
# Exit status of a worker that ended because its parent died (EX_SOFTWARE would mislead).
ORPHAN_EXIT = 70
ORPHAN_GRACE = 2.0


class WorkerSpec:
    """Everything a worker needs, pickled by multiprocessing into the new interpreter."""

    def __init__(self, target: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...],
                 kwargs: dict[str, Any], name: str, parent_pid: int,
                 watchdog: socket.socket | None, direct_child: bool = True) -> None:
        self.target = target
        self.args = args
        self.kwargs = kwargs
        self.name = name
        self.parent_pid = parent_pid
        self.watchdog = watchdog
        self.direct_child = direct_child  # started by the parent itself (spawn), not a server


def process_main(spec: WorkerSpec) -> None:
    """The worker process's entry point (multiprocessing calls it after unpickling ``spec``)."""
    if spec.direct_child:
        _die_with_parent(spec.parent_pid)
    if spec.watchdog is not None:
        threading.Thread(target=_watch_parent, args=(spec.watchdog,), daemon=True,
                         name="namewire-parent-watchdog").start()
    run(run_target(spec))


async def run_target(spec: WorkerSpec, on_channels: Callable[[list[WorkerChannel[Any]]], None]
                     | None = None) -> Any:
    """Open the channel ends among the arguments, run the target, close the channels after it."""
    channels: list[WorkerChannel[Any]] = []
    args = [await _opened(a, channels) for a in spec.args]
    kwargs = {k: await _opened(v, channels) for k, v in spec.kwargs.items()}
    if on_channels is not None:
        on_channels(channels)
    try:
        result = await spec.target(*args, **kwargs)
        # A target that returns ends its channels normally: the parent's `async for` finishes.
        await asyncio.gather(*(ch.aclose() for ch in channels), return_exceptions=True)
        return result
    finally:
        for channel in channels:
            channel.drop()  # a thread's sockets outlive its loop: the parent must see the EOF


async def _opened(value: Any, channels: list[WorkerChannel[Any]]) -> Any:
    if isinstance(value, ChannelEnd):
        channel = await value.open(_parent_gone(value.name))
        channels.append(channel)
        return channel
    return value


def _parent_gone(name: str) -> Callable[[], Coroutine[Any, Any, ChannelBroken]]:
    async def error() -> ChannelBroken:
        return ChannelBroken(name, "the parent's end went away without closing it")

    return error


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(ORPHAN_EXIT)  # the parent died before the guard was set


def _watch_parent(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(1):
            pass  # the parent never writes; anything read is ignored
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Event().wait(ORPHAN_GRACE)
    os._exit(ORPHAN_EXIT)
