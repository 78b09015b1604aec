"""`listen` and `connect`: coroutine sockets from address URLs, and the `Listener` that serves them.

.. code-block:: python

    async def echo(sock: StreamSocket) -> None:
        while (packet := await sock.recv()) is not None:
            await sock.send(packet)

    async with await listen("tcp://127.0.0.1:0", echo) as listener:
        sock = await connect(listener.address)
        await sock.send(b"hi")
        assert await sock.recv() == b"hi"
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import stat
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from ..errors import ConnectionReset, NamewireError
from ..wire import DEFAULT_MAX_FRAME
from ._address import Address, parse_address, sockaddr_url
from ._datagram import DEFAULT_MAX_DATAGRAM, DatagramSocket, bind, connect_datagram
from ._endpoints import DEFAULT_CONNECT_TIMEOUT, ServerGroup, open_stream, start_stream_server
from ._native_stream import (
    NativeServer,
    NativeStreamSocket,
    available,
    native_connect,
    native_listen,
)
from ._schemes import scheme_of
from ._stream import DEFAULT_QUEUE_LIMIT, StreamSocket

__all__ = ["Listener", "connect", "listen"]

log = logging.getLogger("namewire.transport")

# Seconds a closing listener lets each connection flush its buffered writes.
_SHUTDOWN_LINGER = 1.0

SocketT = TypeVar("SocketT", StreamSocket, DatagramSocket)

_MAX_FRAME_LIMIT = 2**32 - 1  # the 4-byte length prefix


def _check_limits(max_frame: int, queue_limit: int) -> None:
    """Reject limits no socket can honour before anything is bound, connected or accepted."""
    if not 1 <= max_frame <= _MAX_FRAME_LIMIT:
        raise ValueError(f"max_frame must be in 1..{_MAX_FRAME_LIMIT}, not {max_frame}")
    if not 1 <= queue_limit <= sys.maxsize:
        raise ValueError(f"queue_limit must be in 1..{sys.maxsize}, not {queue_limit}")


class Listener:
    """A listening address and the handler tasks it runs; made by `listen`.

    ``address`` is the bound URL (port 0 resolved). ``await close()`` stops accepting, cancels the
    handlers and closes their sockets; it is idempotent. ``async with`` closes on exit.
    """

    __slots__ = ("_closed", "_datagram", "_handler", "_server", "_tasks", "_unix_inode", "address")

    def __init__(
        self,
        address: str,
        handler: Callable[[Any], Awaitable[object]],
        server: ServerGroup | NativeServer | None = None,
        datagram: DatagramSocket | None = None,
    ) -> None:
        self.address = address
        self._server = server
        self._datagram = datagram
        self._handler = handler
        self._tasks: dict[asyncio.Task[None], StreamSocket | DatagramSocket] = {}
        self._unix_inode: tuple[int, int] | None = None
        self._closed: asyncio.Event = asyncio.Event()

    @property
    def connections(self) -> int:
        """How many handlers are running (for UDP: 1 until closed)."""
        return len(self._tasks)

    async def close(self) -> None:
        """Stop accepting, cancel every handler, close every socket; wait until all are done."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._datagram is not None:
            await self._datagram.close()
        if self._server is not None:
            await self._server.wait_closed()
        self._remove_unix_socket()

    async def serve_forever(self) -> None:
        """Wait until the listener is closed (by ``close()`` from another task)."""
        await self._closed.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else f"{len(self._tasks)} connections"
        return f"<Listener {self.address} {state}>"

    def _start(self, sock: StreamSocket | DatagramSocket) -> None:
        if self._closed.is_set():
            # Accepted in the same loop turn as close(): nobody will serve it.
            if isinstance(sock, StreamSocket):
                sock.abort()
            return
        loop = asyncio.get_running_loop()
        if isinstance(sock, NativeStreamSocket):
            # The handler runs as the socket's fiber, resumed by the reactor in this context.
            context = contextvars.copy_context()
            sock._fiber_context = context
            task = loop.create_task(self._serve(sock), context=context)
        else:
            task = loop.create_task(self._serve(sock))
        self._tasks[task] = sock
        task.add_done_callback(self._tasks.pop)

    async def _serve(self, sock: StreamSocket | DatagramSocket) -> None:
        peer = sock.peer_address or sock.local_address
        try:
            work = self._handler(sock)
            if isinstance(sock, NativeStreamSocket) and asyncio.iscoroutine(work):
                await sock._host(work)
            else:
                await work
        except asyncio.CancelledError:
            # Only close() cancels handlers. Shutting down: flush what is written, but briefly.
            if isinstance(sock, StreamSocket):
                await sock.close(linger=_SHUTDOWN_LINGER)
            return
        except ConnectionReset as exc:
            # Peers vanish all the time (a client closing with an echo still in flight resets the
            # connection): worth a trace, not an alarm.
            log.info("connection %s on %s closed: %s", peer, self.address, exc)
        except NamewireError as exc:
            # A misbehaving peer (oversize frame...): expected in a server, no traceback needed.
            log.warning("connection %s on %s closed: %s", peer, self.address, exc)
        except Exception:
            log.exception("handler for connection %s on %s failed", peer, self.address)
        await sock.close()

    def _remove_unix_socket(self) -> None:
        # The socket file outlives the socket; remove it unless someone else has bound the path since.
        if self._unix_inode is None:
            return
        path = parse_address(self.address).path
        with contextlib.suppress(OSError):
            info = os.stat(path)
            if stat.S_ISSOCK(info.st_mode) and (info.st_dev, info.st_ino) == self._unix_inode:
                os.unlink(path)


async def listen(
    url: str | Address,
    handler: Callable[[SocketT], Awaitable[object]],
    *,
    framed: bool = True,
    max_frame: int = DEFAULT_MAX_FRAME,
    queue_limit: int = DEFAULT_QUEUE_LIMIT,
    backlog: int = 1024,
    max_datagram: int = DEFAULT_MAX_DATAGRAM,
) -> Listener:
    """Listen on ``tcp://host:port``, ``unix:///path`` or ``udp://host:port`` and serve with ``handler``.

    Streams: ``handler(sock)`` runs as its own task for every accepted connection, with a
    `StreamSocket`; when it returns the socket is closed. An exception in it is logged (with the
    peer's address) and closes only that connection. UDP: there are no connections, so ``handler``
    runs once, with the bound `DatagramSocket` (``recvfrom``/``sendto``); `bind` gives the same
    socket without a handler task.

    Port 0 picks a free port: read ``Listener.address``. A stale Unix socket file is replaced, and
    removed again by ``close()``. Raises `TransportError` naming the address if it cannot listen,
    and ValueError for a ``max_frame`` outside 1..2**32-1 or a ``queue_limit`` below 1.
    """
    _check_limits(max_frame, queue_limit)
    address = parse_address(url)
    scheme = scheme_of(address)
    if not scheme.stream:
        sock = await bind(address, max_datagram=max_datagram, queue_limit=queue_limit)
        listener = Listener(sock.local_address, handler, datagram=sock)
        listener._start(sock)
        return listener
    _refuse_session_only(address)
    listener = Listener(str(address), handler)
    if available():

        def accepted(sock: socket.socket) -> None:
            listener._start(
                NativeStreamSocket(
                    sock, framed=framed, max_frame=max_frame, queue_limit=queue_limit
                )
            )

        listener._server = await native_listen(address, accepted, backlog=backlog)
    else:
        listener._server = await start_stream_server(
            address,
            lambda: StreamSocket(
                framed=framed,
                max_frame=max_frame,
                queue_limit=queue_limit,
                on_connected=listener._start,
            ),
            backlog=backlog,
        )
    sockets = listener._server.sockets
    if sockets:
        listener.address = sockaddr_url(address.scheme, sockets[0].getsockname())
    if scheme.makes_file:
        with contextlib.suppress(OSError):
            info = os.stat(address.path)
            listener._unix_inode = (info.st_dev, info.st_ino)
    return listener


async def connect(
    url: str | Address,
    *,
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    framed: bool = True,
    max_frame: int = DEFAULT_MAX_FRAME,
    queue_limit: int = DEFAULT_QUEUE_LIMIT,
    max_datagram: int = DEFAULT_MAX_DATAGRAM,
) -> StreamSocket | DatagramSocket:
    """Connect to ``tcp://``, ``unix://`` (a `StreamSocket`) or ``udp://`` (a connected
    `DatagramSocket`). Both have ``recv``, ``send``, ``close``, ``local_address`` and ``peer_address``.

    Raises `ConnectionRefused` (nobody listens), `ConnectTimeout` (not connected within ``timeout``
    seconds; None waits as long as the OS does) or `TransportError`; each message names the address.
    ValueError for a ``max_frame`` outside 1..2**32-1 or a ``queue_limit`` below 1, before connecting.
    """
    _check_limits(max_frame, queue_limit)
    address = parse_address(url)
    if not scheme_of(address).stream:
        return await connect_datagram(address, max_datagram=max_datagram, queue_limit=queue_limit)
    _refuse_session_only(address)
    if available():
        native = await native_connect(
            address, timeout, framed=framed, max_frame=max_frame, queue_limit=queue_limit
        )
        return cast(StreamSocket, native)
    _, protocol = await open_stream(
        address,
        lambda: StreamSocket(framed=framed, max_frame=max_frame, queue_limit=queue_limit),
        timeout=timeout,
    )
    assert isinstance(protocol, StreamSocket)
    return protocol


def _refuse_session_only(address: Address) -> None:
    if scheme_of(address).open_stream is not None:
        raise ValueError(f"{address} carries namewire sessions (Node listen= and addresses), "
                         "not coroutine sockets; use tcp:// or unix:// here")
