"""Echo server: every packet is decoded with msgpack, re-encoded and sent back.

luanet's echo server (luanet: the 2014 Lua framework namewire re-creates) did the same with
JSON; the decode/encode round trip is what a real service pays per message, so the benchmark
measures it too.

    python examples/echo_server.py --listen tcp://127.0.0.1:8011

Runs until SIGINT or SIGTERM, then closes the listener and its connections and exits 0.
"""

from __future__ import annotations

import argparse
import resource

import msgpack

import namewire
from namewire.transport import StreamSocket, listen

# One packer for the process: the loop runs one handler at a time, and pack() resets it each call.
_pack = msgpack.Packer(use_bin_type=True).pack
_unpack = msgpack.unpackb


async def echo(sock: StreamSocket) -> None:
    """Serve one connection until the peer closes it."""
    recv = sock.recv
    send = sock.send
    while (packet := await recv()) is not None:
        await send(_pack(_unpack(packet)))


def raise_open_file_limit() -> None:
    """Allow as many sockets as the hard limit does (1000 connections need more than 1024 fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(url: str) -> None:
    raise_open_file_limit()
    async with await listen(url, echo) as listener:
        print(f"echo server listening on {listener.address}", flush=True)
        await listener.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--listen", default="tcp://127.0.0.1:8011", help="address URL to listen on")
    namewire.run(main(parser.parse_args().listen))
