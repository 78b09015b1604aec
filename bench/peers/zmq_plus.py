"""The seed's Plus benchmark on ZeroMQ (pyzmq): ROUTER server, callers multiplexed on one DEALER.

    zmq_plus.py server PORT
    zmq_plus.py client PORT --callers N --seconds S [--warmup W]

The server is the ZeroMQ guide's asynchronous server shape: one ROUTER socket in a plain loop
(``recv_multipart`` / ``send_multipart``, no event loop in between, the fastest way pyzmq offers
to a single-threaded server), answering ``[identity, request id, body]`` with the same
identity and id.  The client is one DEALER socket on ``zmq.asyncio``; every caller sends
``[request id, body]`` and awaits a future that one reader task resolves by id, draining every
reply that is ready (``NOBLOCK``) before it awaits again.  Bodies are msgpack, as for the
other peers.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

import msgpack
import zmq
import zmq.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients"))
from _rpcload import emit, peer_parser, run_async_callers


def serve(port: int) -> None:
    """Answers until killed."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 0)  # 0: no limit; a reply is never dropped
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.bind(f"tcp://127.0.0.1:{port}")
    print(f"zmq plus server on tcp://127.0.0.1:{port}", file=sys.stderr, flush=True)
    recv, send, unpack, pack = sock.recv_multipart, sock.send_multipart, msgpack.unpackb, msgpack.packb
    while True:
        ident, rid, body = recv()
        a, b = unpack(body)
        send([ident, rid, pack(a + b)])


async def client(port: int, callers: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Runs the load over one DEALER socket and returns the harness's result dict."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    pending: dict[bytes, asyncio.Future[Any]] = {}
    ids = itertools.count()
    body = msgpack.packb([1, 2])

    async def read_replies() -> None:
        while True:
            frames = await sock.recv_multipart()
            while True:
                rid, answer = frames
                fut = pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(msgpack.unpackb(answer))
                try:
                    frames = await sock.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break

    loop = asyncio.get_running_loop()

    async def call() -> Any:
        rid = next(ids).to_bytes(8, "little")
        fut = loop.create_future()
        pending[rid] = fut
        await sock.send_multipart([rid, body])
        return await fut

    reader = asyncio.create_task(read_replies())
    try:
        if await asyncio.wait_for(call(), timeout=10) != 3:
            raise SystemExit("zmq plus server answered wrongly")
        return await run_async_callers(call, callers, seconds, warmup)
    finally:
        reader.cancel()
        sock.close()
        ctx.term()


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    if args.role == "server":
        serve(args.port)
    else:
        emit(asyncio.run(client(args.port, args.callers, args.seconds, args.warmup)))


if __name__ == "__main__":
    main()
