"""Opening stream connections and servers from address URLs, on asyncio transports.

The socket is made by the scheme table (`connect_socket`, `bind_sockets`); here it is handed to the
loop, so any loop (uvloop, the standard one, Windows' proactor) runs the transport.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

from ..errors import AuthError, ConnectTimeout, TransportError
from ._address import Address, parse_address
from ._schemes import bind_sockets, connect_socket, scheme_of
from ._tls import TlsConfig

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
    tls: TlsConfig | None = None,
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """Connect to a stream address (tcp://, tls://, unix://, fd://) with ``protocol_factory``'s
    protocol. ``tls`` configures tls:// (None: the system's CAs, no client certificate).

    Raises `ConnectionRefused` (nobody listens), `ConnectTimeout` (after ``timeout`` seconds),
    `AuthError` (the TLS handshake failed: certificate not trusted, expired, wrong host, refused)
    or `TransportError` for other socket failures; each message names the address.
    """
    address = parse_address(url)
    sock = await connect_socket(address, timeout)
    loop = asyncio.get_running_loop()
    try:
        if not scheme_of(address).tls:
            return await loop.connect_accepted_socket(protocol_factory, sock)
        return await tls_connect(sock, protocol_factory, address, tls or TlsConfig(), timeout)
    except BaseException:
        sock.close()
        raise


async def tls_connect(
    sock: socket.socket,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    address: Address,
    tls: TlsConfig,
    timeout: float | None,
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """Run the TLS handshake over the connected ``sock``, then hand it to the loop."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_connection(
            protocol_factory,
            sock=sock,
            ssl=tls.client_context(),
            server_hostname=address.host,
            ssl_handshake_timeout=timeout or DEFAULT_CONNECT_TIMEOUT,
        )
    except ssl.SSLCertVerificationError as exc:
        raise AuthError(f"TLS: {exc.verify_message}", address=str(address)) from None
    except ssl.SSLError as exc:
        raise AuthError(f"TLS handshake refused: {exc.reason or exc}", address=str(address)) from None
    except TimeoutError:
        raise ConnectTimeout(f"TLS handshake with {address} timed out", str(address)) from None
    except (ConnectionError, OSError) as exc:
        # The listener closed before the handshake finished: a client certificate it wanted.
        raise TransportError(f"TLS handshake with {address} failed: {exc or 'connection closed'}",
                             str(address)) from None


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
    tls: TlsConfig | None = None,
) -> ServerGroup:
    """Listen on a stream address (port 0 picks a free port); `TransportError` if it cannot.

    A stale unix socket file (nobody accepting) is replaced; a live one is `TransportError`.
    A tls:// address needs ``tls`` with a certificate (ValueError otherwise).
    """
    address = parse_address(url)
    context = server_context(address, tls)
    sockets = await bind_sockets(address, backlog)
    return await serve_sockets(sockets, protocol_factory, backlog=backlog, context=context)


def server_context(address: Address, tls: TlsConfig | None) -> ssl.SSLContext | None:
    """The ssl context a listener on ``address`` accepts with (None: not a TLS scheme)."""
    if not scheme_of(address).tls:
        return None
    if tls is None:
        raise ValueError(f"cannot listen on {address}: tls:// needs a certificate and key "
                         "(--tls-cert/--tls-key or $NAMEWIRE_TLS_CERT/$NAMEWIRE_TLS_KEY)")
    return tls.server_context()


async def serve_sockets(
    sockets: list[socket.socket],
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    *,
    backlog: int = 1024,
    context: ssl.SSLContext | None = None,
    handshake_timeout: float = 5.0,
) -> ServerGroup:
    """Accept on bound, listening ``sockets`` with the loop's transports (TLS with ``context``,
    whose handshake must end within ``handshake_timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    extra: dict[str, Any] = (
        {"ssl": context, "ssl_handshake_timeout": handshake_timeout} if context is not None else {}
    )
    try:
        for sock in sockets:
            servers.append(
                await loop.create_server(protocol_factory, sock=sock, backlog=backlog, **extra)
            )
    except BaseException:
        for server in servers:
            server.close()
        for sock in sockets[len(servers):]:
            sock.close()
        raise
    return ServerGroup(servers)
