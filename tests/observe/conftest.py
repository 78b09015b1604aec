"""Fixtures of the observability tests: a name service and services in real processes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import namewire


async def wait_for(node: namewire.Node, name: str, timeout: float = 15.0) -> None:
    """Wait until ``name`` answers calls (its process may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await node.rpc_call(name, "namewire.stats", timeout=2)
            return
        except (namewire.NameNotFound, namewire.PeerLost):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def served(stats: dict[str, Any], caller: str, function: str) -> dict[str, Any]:
    """The row of ``stats["served"]`` for calls of ``function`` from ``caller``."""
    rows = [r for r in stats["served"] if r["caller"] == caller and r["function"] == function]
    assert len(rows) == 1, stats["served"]
    return rows[0]
