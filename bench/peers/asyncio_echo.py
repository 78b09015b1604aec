"""Raw asyncio echo: a `Protocol` whose ``data_received`` writes the bytes back.

The baseline a pure-asyncio server reaches with no framing and no decoding, on the default
loop or (``--uvloop``) on uvloop: the gap to namewire's framed echo is what framing, decoding
and re-encoding cost.

Usage: asyncio_echo.py PORT [--host HOST] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import cast


class EchoProtocol(asyncio.Protocol):
    """Writes every chunk straight back on the connection it came from."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Small frames, one in flight per connection: Nagle would only add delay.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serve(host: str, port: int) -> None:
    """Listens until cancelled; the large backlog lets 1000 clients connect at once."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port, backlog=4096)
    print(f"asyncio echo listening on {host}:{port} ({type(loop).__module__})", file=sys.stderr)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--uvloop", action="store_true", help="run on uvloop instead of asyncio's loop"
    )
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    else:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
