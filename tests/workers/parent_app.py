"""A parent process for the no-orphans test: forks one worker, prints its pid, then waits."""

from __future__ import annotations

import asyncio
from typing import Any

import namewire
from namewire.workers import WorkerChannel, fork
from tests.workers.targets import report_pid_and_wait


async def main() -> None:
    ch: WorkerChannel[Any] = WorkerChannel(4)
    await fork(report_pid_and_wait, ch)
    print("worker", await ch.get(), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    namewire.run(main())
