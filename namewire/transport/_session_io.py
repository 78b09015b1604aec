"""Sessions over streams: connect one to a URL, accept them on a URL, run one over a socket.

Which `Stream` carries a connection is decided here, once: the C reactor's `NativeFrameStream`
where it is available and the scheme's sockets are plain ones, else an `AsyncioStream` on the
loop's transports.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from ._address import Address, parse_address, sockaddr_url
from ._endpoints import ServerGroup, serve_sockets
from ._native_stream import NativeServer, native_frame_stream, native_sessions
from ._schemes import bind_sockets, connect_socket, scheme_of
from ._session import Session
from ._streams import AsyncioStream

__all__ = ["connect_session", "listen_sessions", "session_over"]


async def session_over(sock: socket.socket, session: Session, *, native: bool = True) -> Session:
    """Run ``session`` over the connected stream socket ``sock`` (a socketpair end, say)."""
    sock.setblocking(False)
    if native and native_sessions():
        session.attach(native_frame_stream(sock))
        return session
    loop = asyncio.get_running_loop()
    try:
        _, stream = await loop.connect_accepted_socket(AsyncioStream, sock)
    except BaseException:
        sock.close()
        raise
    assert isinstance(stream, AsyncioStream)
    session.attach(stream)
    return session


async def connect_session(url: str | Address, session: Session, *, timeout: float | None) -> Session:
    """Connect ``session`` to ``url``; `TransportError` (refused, timed out...) naming the address.

    Returns without waiting for the peer's hello (`Session.wait_open`).
    """
    address = parse_address(url)
    scheme = scheme_of(address)
    sock = await connect_socket(address, timeout)
    if scheme.open_stream is not None:
        session.attach(await scheme.open_stream(address, sock, timeout))
        return session
    return await session_over(sock, session, native=scheme.native)


async def listen_sessions(
    url: str | Address, make_session: Callable[[], Session], *, backlog: int = 1024
) -> tuple[ServerGroup | NativeServer | Any, str]:
    """Accept connections on ``url``, each run by a new ``make_session()``.

    Returns the server (``close()``, ``sockets``) and the bound URL (port 0 resolved).
    """
    address = parse_address(url)
    scheme = scheme_of(address)
    sockets = await bind_sockets(address, backlog)
    bound = sockaddr_url(address.scheme, sockets[0].getsockname())
    if scheme.serve_streams is not None:
        server = await scheme.serve_streams(address, sockets, lambda s: make_session().attach(s))
        return server, bound + address.path
    if scheme.native and native_sessions():

        def accepted(sock: socket.socket) -> None:
            make_session().attach(native_frame_stream(sock))

        return NativeServer(sockets, accepted, bound), bound

    def protocol() -> AsyncioStream:
        return AsyncioStream(on_connected=lambda stream: make_session().attach(stream))

    return await serve_sockets(sockets, protocol, backlog=backlog), bound
