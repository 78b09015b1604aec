"""Worker targets for the tests: module-level async functions, importable in a spawned process."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from namewire import Node
from namewire.workers import WorkerChannel


async def square(jobs: WorkerChannel[int], results: WorkerChannel[int]) -> None:
    async for x in jobs:
        await results.put(x * x)


async def echo(ch: WorkerChannel[Any]) -> None:
    async for value in ch:
        await ch.put(value)


async def hold(ch: WorkerChannel[Any], control: WorkerChannel[Any]) -> None:
    """Read nothing from ``ch`` until told; then report how much it holds, and drain it."""
    await control.get()
    await control.put(len(ch))
    count = 0
    async for _ in ch:
        count += 1
    await control.put(count)


async def report_pid_and_wait(ch: WorkerChannel[Any]) -> None:
    await ch.put(os.getpid())
    await asyncio.sleep(3600)


async def exit_with(ch: WorkerChannel[Any], code: int) -> None:
    await ch.get()
    sys.exit(code)


async def crash(ch: WorkerChannel[Any]) -> None:
    await ch.get()
    raise RuntimeError("worker crashed on purpose")


async def crash_first_time(marker: str, ch: WorkerChannel[Any]) -> None:
    """Crash with exit code 3 on the first run (no marker file yet); echo on the next ones."""
    path = Path(marker)
    if not path.exists():
        path.write_text("ran")
        os._exit(3)
    await echo(ch)


async def always_exit_3() -> None:
    os._exit(3)


async def serve_as_node(name: str, nameservice: str, ch: WorkerChannel[Any]) -> None:
    node = Node(name)

    @node.function
    def where() -> int:
        return os.getpid()

    @node.function
    def plus(a: int, b: int) -> int:
        return a + b

    async with node.serve(listen="tcp://127.0.0.1:0", nameservice=nameservice):
        await ch.put("ready")
        async for _ in ch:  # until the parent closes the channel
            pass

