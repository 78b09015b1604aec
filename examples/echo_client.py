"""Echo load client: N connections, each with exactly one msgpack ``["hahaha"]`` packet in flight.

Every echo is checked against what was sent. Prints echoes per second each second, then the
average over the whole run.

    python examples/echo_client.py --connect tcp://127.0.0.1:8011 100 --seconds 10

Without ``--seconds`` it runs until SIGINT or SIGTERM. Exits 1 if an echo is wrong or a connection
fails.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time

import msgpack

import namewire
from namewire import NamewireError
from namewire.transport import DatagramSocket, StreamSocket, connect

PACKET = msgpack.packb(["hahaha"], use_bin_type=True)


class Counter:
    __slots__ = ("echoes",)

    def __init__(self) -> None:
        self.echoes = 0


async def pinger(sock: StreamSocket | DatagramSocket, counter: Counter) -> None:
    """One connection: send, wait for the echo, check it, repeat."""
    send = sock.send
    recv = sock.recv
    while True:
        await send(PACKET)
        reply = await recv()
        if reply != PACKET:
            raise RuntimeError(f"bad echo from {sock.peer_address}: {reply!r}")
        counter.echoes += 1


async def report(counter: Counter) -> None:
    last = counter.echoes
    while True:
        await asyncio.sleep(1.0)
        now = counter.echoes
        print(f"{now - last} echoes/s", flush=True)
        last = now


def raise_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(url: str, connections: int, seconds: float | None) -> int:
    raise_open_file_limit()
    # Connect everyone first, so the rate is measured with all connections running.
    try:
        socks = await asyncio.gather(*(connect(url) for _ in range(connections)))
    except NamewireError as exc:
        print(f"echo client: {exc}", file=sys.stderr, flush=True)
        return 1
    counter = Counter()
    tasks = [asyncio.create_task(pinger(sock, counter)) for sock in socks]
    reporter = asyncio.create_task(report(counter))
    failed = asyncio.create_task(_first_failure(tasks))
    started = time.perf_counter()
    status = 0
    try:
        done, _ = await asyncio.wait({failed}, timeout=seconds)
        if done:
            failure = failed.result()
            print(
                f"echo client failed: {type(failure).__name__}: {failure}",
                file=sys.stderr,
                flush=True,
            )
            status = 1
    finally:
        elapsed = time.perf_counter() - started
        for task in [reporter, failed, *tasks]:
            task.cancel()
        await asyncio.gather(reporter, failed, *tasks, return_exceptions=True)
        await asyncio.gather(*(sock.close() for sock in socks), return_exceptions=True)
        rate = counter.echoes / elapsed if elapsed > 0 else 0.0
        print(
            f"average: {rate:.0f} echoes/s ({counter.echoes} echoes in {elapsed:.1f} s, "
            f"{connections} connections)",
            flush=True,
        )
    return status


async def _first_failure(tasks: list[asyncio.Task[None]]) -> BaseException:
    """The first exception a connection task ends with (they only end by failing)."""
    for next_done in asyncio.as_completed(tasks):
        try:
            await next_done
        except Exception as exc:  # noqa: BLE001 - any failure ends the run
            return exc
    return RuntimeError("all connections ended")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--connect", default="tcp://127.0.0.1:8011", help="server address URL")
    parser.add_argument("connections", nargs="?", type=int, help="number of connections")
    parser.add_argument("--connections", "-c", dest="connections_option", type=int)
    parser.add_argument("--seconds", type=float, default=None, help="run time (default: forever)")
    args = parser.parse_args()
    count = args.connections_option or args.connections or 1
    sys.exit(namewire.run(main(args.connect, count, args.seconds)) or 0)
