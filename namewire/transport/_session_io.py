"""Sessions over streams: connect one to a URL, accept them on a URL, run one over a socket.

Which `Stream` carries a connection is decided here, once: the C reactor's `NativeFrameStream`
where it is available and the scheme's sockets are plain ones, else an `AsyncioStream` on the
loop's transports.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from ..errors import ConnectionReset
from ._address import Address, parse_address, sockaddr_url
from ._endpoints import ServerGroup, serve_sockets, server_context, tls_connect
from ._native_stream import NativeServer, native_frame_stream, native_sessions
from ._schemes import bind_sockets, connect_socket, scheme_of
from ._session import Session
from ._streams import AsyncioStream
from ._tls import TlsConfig

__all__ = ["connect_session", "listen_sessions", "session_over"]

log = logging.getLogger("namewire.transport")


async def session_over(sock: socket.socket, session: Session, *, native: bool = True) -> Session:
    """Run ``session`` over the connected stream socket ``sock`` (a socketpair end, say)."""
    sock.setblocking(False)
    if native and native_sessions():
        try:
            stream = native_frame_stream(sock)
        except OSError as exc:
            # Connected, then reset before we got to it (a peer killed that moment):
            # getpeername fails. Reported as the reset it is, so callers can try elsewhere.
            sock.close()
            log.warning("%r: the connection to %s was reset as it was made (%s)",
                        session._conn.name, session.origin or "a peer", exc.strerror)
            raise ConnectionReset(f"the connection was reset as it was made ({exc.strerror})",
                                  session.origin or None) from None
        session.attach(stream)
        return session
    loop = asyncio.get_running_loop()
    try:
        # Attached in connection_made: over a socketpair both ends speak first, so bytes can
        # arrive before connect_accepted_socket returns.
        await loop.connect_accepted_socket(
            lambda: AsyncioStream(on_connected=session.attach), sock
        )
    except BaseException:
        sock.close()
        raise
    return session


async def connect_session(
    url: str | Address, session: Session, *, timeout: float | None, tls: TlsConfig | None = None
) -> Session:
    """Connect ``session`` to ``url``; `TransportError` (refused, timed out...) naming the address,
    `AuthError` when a tls:// handshake fails. ``tls`` configures tls:// addresses.

    Returns without waiting for the peer's hello (`Session.wait_open`).
    """
    address = parse_address(url)
    scheme = scheme_of(address)
    sock = await connect_socket(address, timeout)
    if scheme.open_stream is not None:
        session.attach(await scheme.open_stream(address, sock, timeout))
        return session
    if not scheme.tls:
        return await session_over(sock, session, native=scheme.native)
    tls = tls or TlsConfig()
    given = tls.cert is not None
    try:
        _, stream = await tls_connect(
            sock, lambda: AsyncioStream(certificate_given=given), address, tls, timeout
        )
    except BaseException:
        sock.close()
        raise
    assert isinstance(stream, AsyncioStream)
    session.attach(stream)
    return session


async def listen_sessions(
    url: str | Address,
    make_session: Callable[[], Session],
    *,
    backlog: int = 1024,
    tls: TlsConfig | None = None,
    handshake_timeout: float = 5.0,
    max_connections: int | None = None,
) -> tuple[ServerGroup | NativeServer | Any, str]:
    """Accept connections on ``url``, each run by a new ``make_session()``.

    Returns the server (``close()``, ``sockets``) and the bound URL (port 0 resolved). A tls://
    ``url`` needs ``tls`` with a certificate; its TLS handshake must end within
    ``handshake_timeout`` seconds. With ``max_connections``, at most that many accepted
    connections are open at once: on the C reactor accepting pauses (newcomers wait in the
    backlog); on asyncio transports (tls://, ``NAMEWIRE_NATIVE=0``) newcomers are closed at once.
    Either is logged once per episode.
    """
    address = parse_address(url)
    scheme = scheme_of(address)
    context = server_context(address, tls)
    sockets = await bind_sockets(address, backlog)
    bound = sockaddr_url(address.scheme, sockets[0].getsockname())
    if scheme.serve_streams is not None:
        server = await scheme.serve_streams(address, sockets, lambda s: make_session().attach(s))
        return server, bound + address.path
    if scheme.native and native_sessions():

        def accepted(sock: socket.socket) -> None:
            session = make_session()
            session.on_lost = native.released
            session.attach(native_frame_stream(sock))

        native = NativeServer(sockets, accepted, bound, max_connections)
        return native, bound

    gate = _ConnectionGate(bound, max_connections)

    def connected(stream: AsyncioStream) -> None:
        if not gate.admit():
            stream.abort()
            return
        session = make_session()
        session.on_lost = gate.released
        session.attach(stream)

    def protocol() -> AsyncioStream:
        return AsyncioStream(on_connected=connected)

    server = await serve_sockets(
        sockets, protocol, backlog=backlog, context=context, handshake_timeout=handshake_timeout
    )
    return server, bound


class _ConnectionGate:
    """The connection count of a listener on asyncio transports, which cannot pause accepting:
    past ``limit`` a newcomer is closed at once (logged once per episode, which ends below three
    quarters of the limit)."""

    __slots__ = ("_full", "_limit", "_where", "open")

    def __init__(self, where: str, limit: int | None) -> None:
        self._where = where
        self._limit = limit
        self._full = False
        self.open = 0

    def admit(self) -> bool:
        if self._limit is not None and self.open >= self._limit:
            if not self._full:
                self._full = True
                log.warning("%d connections open on %s, the limit (max_connections): closing "
                            "newcomers until some close", self.open, self._where)
            return False
        self.open += 1
        return True

    def released(self) -> None:
        self.open -= 1
        if self._full and self._limit is not None and self.open <= self._limit * 3 // 4:
            self._full = False
            log.warning("%d connections open on %s: below the limit again", self.open,
                        self._where)
