"""The seed's Plus benchmark over NATS request/reply: ``plus(1, 2)`` from N coroutines.

    nats_plus.py server PORT      # starts nats-server on PORT and a responder, serves until killed
    nats_plus.py client PORT --callers N --seconds S [--warmup W]

The server side is two processes, both on the server CPU: Debian's ``nats-server`` (the broker
every request and reply passes through) and a nats-py responder subscribed to ``plus`` in a
queue group, as NATS documents for services (more responders in the group share the load; the
bench runs one, as it runs one process for every other system).  The responder answers each
request from its subscription callback with ``msg.respond``.  The client is one nats-py
connection; every caller does ``await nc.request("plus", ...)``, which nats-py multiplexes over
one wildcard reply subscription (its default "new style" request).  Bodies are msgpack
(``[1, 2]`` in, ``3`` out), as for the other peers.  The runner accounts the CPU of both
server-side processes as the server's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients"))
from _rpcload import emit, peer_parser, run_async_callers

SUBJECT = "plus"
QUEUE = "plus-servers"


async def respond(port: int) -> None:
    """The responder: answers ``plus`` requests until killed."""
    nc = await connect(port)

    async def plus(msg: Any) -> None:
        a, b = msgpack.unpackb(msg.data)
        await msg.respond(msgpack.packb(a + b))

    # No pending limit: the default (64k messages) would drop requests under 1000 callers'
    # bursts, which a benchmark must not hide as "fewer calls".
    await nc.subscribe(SUBJECT, queue=QUEUE, cb=plus, pending_msgs_limit=-1,
                       pending_bytes_limit=-1)
    await nc.flush()
    print(f"nats responder on nats://127.0.0.1:{port}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


async def connect(port: int) -> Any:
    return await nats.connect(
        f"nats://127.0.0.1:{port}", connect_timeout=5, max_reconnect_attempts=0,
        allow_reconnect=False,
    )


def serve(port: int) -> None:
    """nats-server on ``port`` (killed with us: it is in our process group) and the responder."""
    binary = shutil.which("nats-server")
    if binary is None:
        raise SystemExit("nats-server is not installed (apt-get install nats-server)")
    broker = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)])
    try:
        asyncio.run(wait_and_respond(port))
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=10)


async def wait_and_respond(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    await respond(port)


async def client(port: int, callers: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Runs the load over one connection and returns the harness's result dict."""
    nc = await connect(port)
    body = msgpack.packb([1, 2])
    try:
        # The responder may still be subscribing: retry the first request for a while.
        for attempt in range(50):
            try:
                first = await nc.request(SUBJECT, body, timeout=1)
                break
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
        if msgpack.unpackb(first.data) != 3:
            raise SystemExit("nats plus responder answered wrongly")

        async def call() -> Any:
            reply = await nc.request(SUBJECT, body, timeout=30)
            return msgpack.unpackb(reply.data)

        return await run_async_callers(call, callers, seconds, warmup)
    finally:
        await nc.close()


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    if args.role == "server":
        serve(args.port)
    else:
        emit(asyncio.run(client(args.port, args.callers, args.seconds, args.warmup)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
