"""The seed's Plus benchmark on grpcio's asyncio API: ``plus(1, 2)`` from N coroutines.

    grpc_plus.py server PORT
    grpc_plus.py client PORT --callers N --seconds S [--warmup W]

No generated code: the server registers a generic handler for ``/bench.Plus/Plus`` and both
sides (de)serialize the message bodies with msgpack (``[1, 2]`` in, ``3`` out), which is what
namewire's wire uses too, so the comparison is of the RPC machinery and not of protobuf.  All
callers share one channel (one HTTP/2 connection), grpc's intended use; calls multiplex on it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import grpc
import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients"))
from _rpcload import emit, peer_parser, run_async_callers

METHOD = "/bench.Plus/Plus"


async def plus(request: list[int], context: grpc.aio.ServicerContext) -> int:
    """The remote function: the sum of its two arguments."""
    return request[0] + request[1]


async def serve(port: int) -> None:
    """Serves until killed."""
    handler = grpc.method_handlers_generic_handler(
        "bench.Plus",
        {
            "Plus": grpc.unary_unary_rpc_method_handler(
                plus, request_deserializer=msgpack.unpackb, response_serializer=msgpack.packb
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"grpc plus server on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await server.wait_for_termination()


async def client(port: int, callers: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Runs the load over one channel and returns the harness's result dict."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = channel.unary_unary(
            METHOD, request_serializer=msgpack.packb, response_deserializer=msgpack.unpackb
        )
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        if await stub([1, 2]) != 3:
            raise SystemExit("grpc plus server answered wrongly")

        async def call() -> Any:
            return await stub([1, 2])

        return await run_async_callers(call, callers, seconds, warmup)


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(serve(args.port))
    else:
        emit(asyncio.run(client(args.port, args.callers, args.seconds, args.warmup)))


if __name__ == "__main__":
    main()
