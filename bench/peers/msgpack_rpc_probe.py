"""The bare msgpack-RPC probe: the smallest honest multiplexed RPC in Python on uvloop.

    msgpack_rpc_probe.py server PORT
    msgpack_rpc_probe.py client PORT --callers N --seconds S [--warmup W]

A reference row, not a peer: what a Python process on uvloop reaches with nothing but the
essentials of a multiplexed RPC.  Both sides are an ``asyncio.Protocol`` over one TCP connection
carrying a msgpack stream (no length prefix: ``msgpack.Unpacker`` cuts it):

- the client sends ``[id, "plus", [1, 2]]``, files a future per call under its id, and writes
  what its callers queued once per loop turn (a ``call_soon`` flush, as namewire does);
- the server decodes every request of a read, looks the function up by name in a dict, calls it
  inline, and writes all the replies ``[id, result]`` of that read in one ``write``.

Nothing else: no handshake, no deadlines, no errors carried back, no liveness, no flow control,
no names.  namewire does all of those on top of the same loop, so its distance from this row is
the price of its protocol and node.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import msgpack
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients"))
from _rpcload import emit, peer_parser, run_async_callers

FUNCTIONS = {"plus": lambda a, b: a + b}


class ServerProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's transports are not asyncio.Transport
        self.unpacker = msgpack.Unpacker()
        self.pack = msgpack.Packer().pack

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        pack = self.pack
        out = [pack([call_id, FUNCTIONS[func](*args)]) for call_id, func, args in self.unpacker]
        self.transport.write(b"".join(out))


class ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.unpacker = msgpack.Unpacker()
        self.pack = msgpack.Packer().pack
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.queued: list[bytes] = []
        self.next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        pending = self.pending
        for call_id, result in self.unpacker:
            pending.pop(call_id).set_result(result)

    def flush(self) -> None:
        queued, self.queued = self.queued, []
        self.transport.write(b"".join(queued))

    def call(self, func: str, *args: Any) -> asyncio.Future[Any]:
        call_id = self.next_id = self.next_id + 1
        fut = self.loop.create_future()
        self.pending[call_id] = fut
        if not self.queued:
            self.loop.call_soon(self.flush)
        self.queued.append(self.pack([call_id, func, args]))
        return fut


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(ServerProtocol, "127.0.0.1", port)
    print(f"msgpack-RPC probe on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await server.serve_forever()


async def client(port: int, callers: int, seconds: float, warmup: float) -> dict[str, Any]:
    _, proto = await asyncio.get_running_loop().create_connection(
        ClientProtocol, "127.0.0.1", port
    )
    if await proto.call("plus", 1, 2) != 3:
        raise SystemExit("probe server answered wrongly")

    def call() -> asyncio.Future[Any]:
        return proto.call("plus", 1, 2)

    return await run_async_callers(call, callers, seconds, warmup)


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    if args.role == "server":
        uvloop.run(serve(args.port))
    else:
        emit(uvloop.run(client(args.port, args.callers, args.seconds, args.warmup)))


if __name__ == "__main__":
    main()
