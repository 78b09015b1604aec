"""The Plus benchmark: many coroutines calling ``PlusServer.plus(1, 2)`` by name, in a loop.

luanet, the 2014 Lua framework namewire re-creates, measured itself with this test.

    python examples/plus_client.py --callers 1000 --seconds 5 [--nameservice URL]

Prints calls per second each second, then the average.
"""

import argparse
import asyncio
import time

import namewire


async def first_call(node: namewire.Node, wait: float) -> None:
    """Call once, waiting up to ``wait`` seconds for PlusServer to register."""
    deadline = time.monotonic() + wait
    while True:
        try:
            await node.rpc_call("PlusServer", "plus", 1, 2)
            return
        except (namewire.NameNotFound, namewire.PeerLost):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def main(args: argparse.Namespace) -> None:
    node = namewire.Node(args.name)
    calls = 0

    async def caller() -> None:
        nonlocal calls
        while True:
            assert await node.rpc_call("PlusServer", "plus", 1, 2) == 3
            calls += 1

    async with node.serve(listen=None, nameservice=args.nameservice):
        await first_call(node, args.wait)  # look up and connect once, up front
        tasks = [asyncio.ensure_future(caller()) for _ in range(args.callers)]
        start = last = time.perf_counter()
        seen = 0
        try:
            for second in range(1, args.seconds + 1):
                await asyncio.sleep(start + second - time.perf_counter())
                now = time.perf_counter()
                print(f"{second:3d}s  {(calls - seen) / (now - last):>10,.0f} calls/s", flush=True)
                seen, last = calls, now
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.perf_counter() - start
        print(f"average {calls / elapsed:,.0f} calls/s with {args.callers} callers "
              f"over {elapsed:.1f}s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=1000, help="concurrent callers (default 1000)")
    parser.add_argument("--seconds", type=int, default=5, help="how long to run (default 5)")
    parser.add_argument("--nameservice", default=None, help="name service URL")
    parser.add_argument("--name", default="PlusClient", help="this client's node name")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="seconds to wait for PlusServer to appear (default 0)")
    namewire.run(main(parser.parse_args()))
