"""A client run on one of the test hosts: it reports what it saw as JSON lines on stdout.

    driver.py --nameservice URL --listen tcp://ADDR:0 basic WORKER
    driver.py ... steady NAME[,NAME...] SECONDS [--msgs-to NAME] [--lookups] [--call-timeout T]

``basic``: a call, a message and its echo, the providers of ``plus``, the open connections.
``steady``: a ``whoami`` call to each NAME every interval for SECONDS, one line per call
(wall-clock time, ok, the answering pid or the error type); with ``--msgs-to``, a numbered
message to that service (tests/apps/worker.py echoes it) each round, and a last line with the
sequence numbers echoed back; with ``--lookups``, a registry look-up of the first NAME.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import namewire


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def basic(node: namewire.Node, worker: str) -> None:
    for _ in range(100):  # the worker may still be registering
        if await node.get_remote_func_provider("plus"):
            break
        await asyncio.sleep(0.1)
    plus = await node.rpc_call(worker, "plus", 2, 3)
    await node.send_msg(worker, "hello")
    echo = await asyncio.wait_for(node.get_msg(), 10)
    emit(found=time.time(), plus=plus, echo=list(echo), providers=await node.get_remote_func_provider("plus"),
         peers=node.peers, host=namewire.registry.host_id())


async def steady(node: namewire.Node, worker: str, seconds: float, args: argparse.Namespace) -> None:
    echoed: list[int] = []

    async def collect() -> None:
        while True:
            _, msg = await node.get_msg()
            echoed.append(msg["echo"])

    collector = asyncio.ensure_future(collect())
    end = time.monotonic() + seconds
    seq = 0
    targets = worker.split(",")
    while time.monotonic() < end:
        for target in targets:
            started = time.time()
            try:
                answer = await node.rpc_call(target, "whoami", timeout=args.call_timeout)
                emit(to=target, t=started, done=time.time(), ok=True, pid=answer["pid"])
            except namewire.NamewireError as exc:
                emit(to=target, t=started, done=time.time(), ok=False, err=type(exc).__name__,
                     why=str(exc)[:200])
        if args.lookups and node.registry is not None:
            try:
                await node.registry.lookup(targets[0])
                emit(lookup=time.time(), ok=True, degraded=node.registry.degraded)
            except namewire.NamewireError as exc:
                emit(lookup=time.time(), ok=False, err=type(exc).__name__)
        if args.msgs_to:
            try:
                await asyncio.wait_for(node.send_msg(args.msgs_to, seq), args.call_timeout)
                seq += 1
            except (namewire.NamewireError, TimeoutError):
                pass
        await asyncio.sleep(args.interval)
    await asyncio.sleep(1.0)  # echoes still on their way
    collector.cancel()
    emit(sent=seq, echoed=echoed)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nameservice", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--name", default=f"Driver-{os.getpid()}")
    parser.add_argument("--lease-ttl", type=float, default=3.0)
    parser.add_argument("--call-timeout", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--msgs-to", metavar="NAME", help="also send numbered messages to NAME")
    parser.add_argument("--lookups", action="store_true", help="also look the first one up")
    parser.add_argument("scenario", choices=("basic", "steady"))
    parser.add_argument("worker")
    parser.add_argument("seconds", type=float, nargs="?", default=0.0)
    args = parser.parse_args()
    node = namewire.Node(args.name)
    async with node.serve(listen=args.listen, unix=False, nameservice=args.nameservice,
                          lease_ttl=args.lease_ttl):
        emit(ready=time.time())
        if args.scenario == "basic":
            await basic(node, args.worker)
        else:
            await steady(node, args.worker, args.seconds, args)


if __name__ == "__main__":
    namewire.run(main())
