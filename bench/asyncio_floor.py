"""The asyncio floor of one call: what awaiting a future costs on uvloop with nothing else.

    python bench/asyncio_floor.py [--tasks 1000] [--seconds 2]

N tasks each await a fresh future in a loop; one callback per loop turn resolves every future
filed since the last one. No I/O, no encoding, no ids: a task step, a future and a scheduled
wake-up per call. Any Python RPC client on asyncio pays at least this per call, so it bounds what
calls by name can reach (issue 14's note: the client CPU per call in the RPC table against this).
Prints CPU microseconds per call.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop


async def floor(tasks: int, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[int]] = []
    done = 0

    async def caller() -> None:
        nonlocal done
        while True:
            fut = loop.create_future()
            waiting.append(fut)
            await fut
            done += 1

    def resolve() -> None:
        batch = waiting[:]
        waiting.clear()
        for fut in batch:
            fut.set_result(3)
        loop.call_soon(resolve)

    running = [asyncio.ensure_future(caller()) for _ in range(tasks)]
    loop.call_soon(resolve)
    await asyncio.sleep(0.3)  # warm-up
    cpu0, done0 = time.process_time(), done
    await asyncio.sleep(seconds)
    per_call = (time.process_time() - cpu0) / (done - done0)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    return per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="concurrent tasks (default 1000)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time (default 2)")
    args = parser.parse_args()
    per_call = uvloop.run(floor(args.tasks, args.seconds))
    print(f"asyncio floor on uvloop: {per_call * 1e6:.2f} us CPU per call ({args.tasks} tasks)")


if __name__ == "__main__":
    main()
