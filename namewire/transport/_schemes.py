"""The one table where a URL scheme is chosen: `SCHEMES`.

Every address in namewire is a URL, and this table is the only place that knows what a scheme
means: how its URL is written, how to connect a socket to it, how to bind listening sockets for it,
whether peers on other hosts can use it, and whether the C reactor can carry its connections. Code
elsewhere asks the table (`scheme_of`, `connect_socket`, `bind_sockets`) instead of comparing scheme
names. A new kind of stream (``tls://``, ``ws://``) is one more entry here plus its `Stream` class.
A scheme whose connections need more than a plain socket (a WebSocket handshake) names the
functions that make its `Stream` from the socket (``open_stream``) and serve them (``serve_streams``).

- ``tcp://host:port`` and ``unix:///path/to.sock``: plain sockets, on the C reactor where it is
  built, else on asyncio transports.
- ``fd://N``: an already connected stream socket inherited as file descriptor N (a socketpair to a
  worker process); it can be connected (adopted) but not listened on.
- ``udp://host:port``: datagrams (`DatagramSocket`), not a stream.
- ``ws://host:port/path`` and ``wss://`` (TLS): namewire sessions over WebSocket, one envelope per
  message (`WebSocketStream`, on python-websockets); sessions only, not the coroutine sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from ..errors import ConnectionRefused, ConnectTimeout, TransportError
from ._address import Address
from ._streams import Stream

__all__ = [
    "SCHEMES",
    "Scheme",
    "bind_sockets",
    "connect_socket",
    "parse_url",
    "scheme_of",
    "unix_sockets_supported",
]

_REFUSED = (errno.ECONNREFUSED, errno.ENOENT, errno.ECONNRESET)


def unix_sockets_supported() -> bool:
    """Whether unix:// can be used: the one check for platforms without AF_UNIX in asyncio
    (Windows). ``NAMEWIRE_NO_UNIX=1`` forces the answer no, so that behaviour is tested on Linux."""
    return hasattr(socket, "AF_UNIX") and os.environ.get("NAMEWIRE_NO_UNIX", "0") != "1"


@dataclass(frozen=True, slots=True)
class Scheme:
    """What a URL scheme means. ``connect``/``bind`` are None where the scheme cannot do that."""

    name: str
    stream: bool
    parse: Callable[[SplitResult], Address]
    connect: Callable[[Address, float | None], Awaitable[socket.socket]] | None = None
    bind: Callable[[Address, int], Awaitable[list[socket.socket]]] | None = None
    same_host: bool = False  # only reachable from this host: other hosts skip such addresses
    native: bool = True  # a plain socket that the C reactor can carry
    makes_file: bool = False  # binding creates a file, removed when the listener closes
    supported: Callable[[], bool] = lambda: True
    # Streams that are not the socket itself: (address, connected socket, timeout) -> Stream, and
    # (address, bound sockets, on_stream) -> a server with close() and sockets.
    open_stream: Callable[[Address, socket.socket, float | None], Awaitable[Stream]] | None = None
    serve_streams: (
        Callable[[Address, list[socket.socket], Callable[[Stream], None]], Awaitable[Any]] | None
    ) = None


# -- parsing ----------------------------------------------------------------------------------------


def _host_port(parts: SplitResult) -> Address:
    if parts.hostname is None or parts.port is None:
        raise ValueError("host and port are required")
    return Address(parts.scheme, host=parts.hostname, port=parts.port)


def _path(parts: SplitResult) -> Address:
    path = parts.netloc + parts.path
    if not path:
        raise ValueError("no socket path")
    return Address(parts.scheme, path=path)


def _web_url(parts: SplitResult) -> Address:
    if parts.hostname is None:
        raise ValueError("a host is required")
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    return Address(parts.scheme, host=parts.hostname, port=port, path=parts.path or "/")


def _fd_number(parts: SplitResult) -> Address:
    if not parts.netloc.isdigit():
        raise ValueError("a file descriptor number is required")
    return Address(parts.scheme, port=int(parts.netloc))


# -- connecting -------------------------------------------------------------------------------------


def _connect_error(exc: OSError, address: Address) -> TransportError:
    if isinstance(exc, ConnectionRefusedError) or exc.errno in _REFUSED:
        return ConnectionRefused(f"connection refused by {address}", str(address))
    reason = exc.strerror or str(exc)
    return TransportError(f"cannot connect to {address}: {reason}", str(address))


async def _connect_tcp(address: Address, timeout: float | None) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error or OSError(errno.EHOSTUNREACH, "no address to connect to")


async def _connect_unix(address: Address, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, address.path)
    except BaseException:
        sock.close()
        raise
    return sock


async def _adopt_fd(address: Address, timeout: float | None) -> socket.socket:
    sock = socket.socket(fileno=address.port)
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise TransportError(f"{address} is not a stream socket", str(address))
    sock.setblocking(False)
    return sock


def _websocket_client(tls: bool) -> Callable[[Address, socket.socket, float | None],
                                              Awaitable[Stream]]:
    async def open_stream(address: Address, sock: socket.socket, timeout: float | None) -> Stream:
        from ._websocket import open_websocket  # websockets is imported by those who use it

        return await open_websocket(address, sock, timeout, tls=tls)

    return open_stream


def _websocket_server(tls: bool) -> Callable[
        [Address, list[socket.socket], Callable[[Stream], None]], Awaitable[Any]]:
    async def serve(address: Address, sockets: list[socket.socket],
                    on_stream: Callable[[Stream], None]) -> Any:
        from ._websocket import serve_websockets

        return await serve_websockets(address, sockets, on_stream, tls=tls)

    return serve


# -- binding ----------------------------------------------------------------------------------------


async def _bind_tcp(address: Address, backlog: int) -> list[socket.socket]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        address.host or None, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def _bind_unix(address: Address, backlog: int) -> list[socket.socket]:
    remove_stale_socket(address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(address.path)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return [sock]


def remove_stale_socket(address: Address) -> None:
    """Remove a unix socket file nobody accepts on; a live one is `TransportError` (in use)."""
    try:
        mode = os.stat(address.path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise TransportError(
            f"cannot listen on {address}: path exists and is not a socket", str(address)
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(address.path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address.path)
    else:
        raise TransportError(f"cannot listen on {address}: address in use", str(address))
    finally:
        probe.close()


SCHEMES: dict[str, Scheme] = {
    "tcp": Scheme("tcp", stream=True, parse=_host_port, connect=_connect_tcp, bind=_bind_tcp),
    "unix": Scheme(
        "unix",
        stream=True,
        parse=_path,
        connect=_connect_unix,
        bind=_bind_unix,
        same_host=True,
        makes_file=True,
        supported=unix_sockets_supported,
    ),
    "fd": Scheme("fd", stream=True, parse=_fd_number, connect=_adopt_fd, same_host=True),
    "udp": Scheme("udp", stream=False, parse=_host_port),
    **{
        name: Scheme(
            name,
            stream=True,
            parse=_web_url,
            connect=_connect_tcp,
            bind=_bind_tcp,
            native=False,
            open_stream=_websocket_client(tls=name == "wss"),
            serve_streams=_websocket_server(tls=name == "wss"),
        )
        for name in ("ws", "wss")
    },
}

_FORMS = "tcp://host:port, unix:///path/to.sock, fd://N, udp://host:port or ws://host:port/path"


def parse_url(url: str) -> Address:
    """Parse ``url``; raise ValueError saying which forms are accepted."""
    try:
        parts = urlsplit(url)
        scheme = SCHEMES.get(parts.scheme)
        if scheme is not None:
            if not scheme.supported():
                raise ValueError(f"{parts.scheme}:// is not available on this platform")
            return scheme.parse(parts)
    except ValueError as exc:
        raise ValueError(f"bad address {url!r}: {exc}; expected {_FORMS}") from None
    raise ValueError(f"bad address {url!r}: unknown scheme {parts.scheme!r}; expected {_FORMS}")


def scheme_of(address: Address | str) -> Scheme:
    """The table entry of ``address`` (a URL or a parsed `Address`)."""
    name = address.scheme if isinstance(address, Address) else urlsplit(address).scheme
    scheme = SCHEMES.get(name)
    if scheme is None:
        raise ValueError(f"unknown scheme {name!r}; expected {_FORMS}")
    return scheme


async def connect_socket(address: Address, timeout: float | None) -> socket.socket:
    """A connected, non-blocking stream socket to ``address``.

    Raises `ConnectionRefused` (nobody listens), `ConnectTimeout` (after ``timeout`` seconds) or
    `TransportError`; each message names the address. ValueError for a scheme that is no stream.
    """
    scheme = scheme_of(address)
    if scheme.connect is None:
        raise ValueError(f"{address} is not a stream address (tcp://, unix:// or fd://)")
    try:
        async with asyncio.timeout(timeout):
            return await scheme.connect(address, timeout)
    except TimeoutError:
        raise ConnectTimeout(
            f"connect to {address} timed out after {timeout}s", str(address)
        ) from None
    except OSError as exc:
        if isinstance(exc, TransportError):
            raise
        raise _connect_error(exc, address) from None


async def bind_sockets(address: Address, backlog: int) -> list[socket.socket]:
    """Listening, non-blocking sockets for ``address`` (port 0 picks a free port).

    A stale unix socket file is replaced; a live one is `TransportError`, as is any bind failure.
    """
    scheme = scheme_of(address)
    if scheme.bind is None:
        raise ValueError(f"cannot listen on {address}: {scheme.name}:// addresses accept no "
                         "connections (tcp:// or unix://)")
    try:
        return await scheme.bind(address, backlog)
    except OSError as exc:
        if isinstance(exc, TransportError):
            raise
        reason = exc.strerror or str(exc)
        raise TransportError(f"cannot listen on {address}: {reason}", str(address)) from None
