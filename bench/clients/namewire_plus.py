"""The seed's Plus benchmark on namewire: N coroutines calling ``PlusServer.plus(1, 2)`` by name.

    namewire_plus.py --nameservice tcp://127.0.0.1:PORT --callers N --seconds S [--warmup W]

The client is a pure caller (``listen=None``): it finds "PlusServer" through the name service
on the first call, and every caller then shares the node's one connection to it, as a namewire
service would.  One call is made and checked before the clock starts, so the look-up and the
connect are not part of the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import namewire

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rpcload import emit, run_async_callers


async def first_call(node: namewire.Node, target: str = "PlusServer", timeout: float = 15.0) -> Any:
    """The first ``plus(1, 2)``, retried while ``target`` is not registered yet (it may still be
    starting). The other Plus benchmarks (metrics_overhead.py, turns.py) start with it too."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await node.rpc_call(target, "plus", 1, 2)
        except namewire.NameNotFound:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def measure(nameservice: str, callers: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Joins the name service as a caller, checks one call, then runs the load."""
    node = namewire.Node(f"bench-client-{os.getpid()}")
    async with node.serve(nameservice=nameservice, listen=None):
        first = await first_call(node)
        if first != 3:
            raise SystemExit(f"PlusServer.plus(1, 2) returned {first!r}, expected 3")

        def call() -> Coroutine[Any, Any, Any]:
            # rpc_call's own coroutine, awaited by the caller as user code would (no extra layer;
            # the probe's callers await its future the same way).
            return node.rpc_call("PlusServer", "plus", 1, 2)

        return await run_async_callers(call, callers, seconds, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nameservice", required=True)
    parser.add_argument("--callers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    result = namewire.run(measure(args.nameservice, args.callers, args.seconds, args.warmup))
    if result is None:
        # run() returns None when a signal stopped the loop before the load finished.
        raise SystemExit("namewire_plus: stopped before the run finished")
    emit(result)


if __name__ == "__main__":
    main()
