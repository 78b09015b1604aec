"""Opening stream connections and servers from address URLs, on asyncio transports.

The socket is made by the scheme table (`connect_socket`, `bind_sockets`); here it is handed to the
loop, so any loop (uvloop, the standard one, Windows' proactor) runs the transport.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from ._address import Address, parse_address
from ._schemes import bind_sockets, connect_socket

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "ServerGroup",
    "open_stream",
    "serve_sockets",
    "start_stream_server",
]

DEFAULT_CONNECT_TIMEOUT = 10.0


async def open_stream(
    url: str | Address,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    *,
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """Connect to a stream address (tcp://, unix://, fd://) with ``protocol_factory``'s protocol.

    Raises `ConnectionRefused` (nobody listens), `ConnectTimeout` (after ``timeout`` seconds) or
    `TransportError` for other socket failures; each message names the address.
    """
    sock = await connect_socket(parse_address(url), timeout)
    try:
        return await asyncio.get_running_loop().connect_accepted_socket(protocol_factory, sock)
    except BaseException:
        sock.close()
        raise


class ServerGroup:
    """The listening sockets of one address (IPv4 and IPv6 for a name), as one server: the part of
    `asyncio.Server` namewire uses (``sockets``, ``close``, ``wait_closed``)."""

    def __init__(self, servers: list[asyncio.Server]) -> None:
        self._servers = servers

    @property
    def sockets(self) -> list[socket.socket]:
        return [sock for server in self._servers for sock in server.sockets]

    def close(self) -> None:
        for server in self._servers:
            server.close()

    async def wait_closed(self) -> None:
        for server in self._servers:
            await server.wait_closed()


async def start_stream_server(
    url: str | Address,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    *,
    backlog: int = 1024,
) -> ServerGroup:
    """Listen on a stream address (port 0 picks a free port); `TransportError` if it cannot.

    A stale unix socket file (nobody accepting) is replaced; a live one is `TransportError`.
    """
    sockets = await bind_sockets(parse_address(url), backlog)
    return await serve_sockets(sockets, protocol_factory, backlog=backlog)


async def serve_sockets(
    sockets: list[socket.socket],
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    *,
    backlog: int = 1024,
) -> ServerGroup:
    """Accept on bound, listening ``sockets`` with the loop's transports."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    try:
        for sock in sockets:
            servers.append(await loop.create_server(protocol_factory, sock=sock, backlog=backlog))
    except BaseException:
        for server in servers:
            server.close()
        for sock in sockets[len(servers):]:
            sock.close()
        raise
    return ServerGroup(servers)
