"""Worker targets for the tests: module-level async functions, importable in a spawned process."""
from __future__ import annotations
from typing import Any
from namewire.workers import WorkerChannel

async def square(jobs: WorkerChannel[int], results: WorkerChannel[int]) -> None:
    async for x in jobs:
        await results.put(x * x)
