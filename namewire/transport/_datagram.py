"""`DatagramSocket`: a coroutine UDP socket, and `bind` / `connect_datagram` to make one.

Addresses in and out are ``udp://host:port`` URLs, like everywhere else in namewire. Converting
between URLs and socket addresses is cached, so a server answering the same peers pays for it once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import lru_cache
from typing import Any, cast

from ..errors import ConnectionRefused, DatagramTooLarge, TransportError
from ._address import Address, parse_address, sockaddr_url
from ._flow import WriteFlow
from ._schemes import scheme_of

__all__ = ["DEFAULT_MAX_DATAGRAM", "DatagramSocket", "bind", "connect_datagram"]

DEFAULT_MAX_DATAGRAM = 65507
"""The largest UDP payload over IPv4 (65535 - 8 byte UDP header - 20 byte IP header)."""

_DEFAULT_QUEUE_LIMIT = 1024 * 1024

DatagramTarget = str | Address | tuple[str, int]


@lru_cache(maxsize=4096)
def _url_of(sockaddr: tuple[object, ...]) -> str:
    return sockaddr_url("udp", sockaddr)


@lru_cache(maxsize=4096)
def _sockaddr_of(url: str) -> tuple[str, int]:
    address = parse_address(url)
    if scheme_of(address).stream:
        raise ValueError(f"{url!r} is not a udp:// address")
    return (address.host, address.port)


def _target(addr: DatagramTarget) -> tuple[str, int]:
    if isinstance(addr, tuple):
        return addr
    if isinstance(addr, Address):
        return _sockaddr_of(str(addr))
    return _sockaddr_of(addr)


class DatagramSocket(asyncio.DatagramProtocol):
    """A UDP socket: bound with `bind` (a server: ``recvfrom``/``sendto`` any peer) or connected with
    `connect_datagram` / ``connect("udp://...")`` (``recv``/``send`` to its one peer).

    Contract:

    - Datagrams over ``max_datagram`` bytes are refused by ``sendto`` with `DatagramTooLarge`; one
      received over it makes the ``recvfrom`` that would return it raise `DatagramTooLarge` instead
      (the next call goes on with the next datagram).
    - Received datagrams wait in a queue of at most ``queue_limit`` bytes; further ones are dropped
      (UDP may drop anyway) and counted in ``dropped``.
    - Socket errors the OS reports for an earlier send (for a connected socket: nothing listens at the
      peer, ICMP port unreachable) are raised by the next ``recvfrom``/``recv``, in arrival order.
    """

    __slots__ = (
        "_closed",
        "_flow",
        "_loop",
        "_lost",
        "_queue",
        "_queue_limit",
        "_queued",
        "_transport",
        "_waiter",
        "dropped",
        "local_address",
        "max_datagram",
        "peer_address",
    )

    def __init__(
        self,
        *,
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
        queue_limit: int = _DEFAULT_QUEUE_LIMIT,
    ) -> None:
        if max_datagram <= 0:
            raise ValueError(f"max_datagram must be positive, not {max_datagram}")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._transport: asyncio.DatagramTransport | None = None
        self._queue: deque[tuple[bytes, str] | TransportError] = deque()
        self._queued = 0
        self._queue_limit = queue_limit
        self._waiter: asyncio.Future[None] | None = None
        self._flow = WriteFlow(loop)
        self._closed = False
        self._lost: asyncio.Future[None] = loop.create_future()
        self.max_datagram = max_datagram
        self.dropped = 0
        """Datagrams dropped because the receive queue was full."""
        self.local_address = ""
        """The bound URL, e.g. ``udp://127.0.0.1:40123``."""
        self.peer_address: str | None = None
        """The peer's URL for a connected socket, None for a bound one."""

    async def recvfrom(self) -> tuple[bytes, str]:
        """The next datagram and its sender's URL.

        Raises `DatagramTooLarge` for a datagram over ``max_datagram``, `ConnectionRefused` or
        `TransportError` for an error the OS reported, and `TransportError` once the socket is closed.
        """
        queue = self._queue
        while not queue:
            if self._closed:
                raise TransportError(
                    f"datagram socket {self.local_address} is closed", self.local_address
                )
            if self._waiter is not None:
                raise RuntimeError(
                    f"recvfrom() on {self.local_address} is already awaited by another task"
                )
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        item = queue.popleft()
        if isinstance(item, TransportError):
            raise item
        self._queued -= len(item[0])
        return item

    async def recv(self) -> bytes | None:
        """The next datagram's bytes (for a connected socket), or None once the socket is closed.

        Raises as ``recvfrom`` does, except for closing.
        """
        if self._closed and not self._queue:
            return None
        try:
            return (await self.recvfrom())[0]
        except TransportError:
            if self._closed and not self._queue:
                return None
            raise

    def sendto(
        self, data: bytes | bytearray | memoryview, addr: DatagramTarget | None = None
    ) -> None:
        """Send one datagram to ``addr`` (a ``udp://`` URL), or to the peer of a connected socket.

        Never blocks: if the OS buffer is full the loop keeps the datagram until it can be sent; use
        ``await drain()`` (or ``send``) to wait when that happens. Raises `DatagramTooLarge` over
        ``max_datagram``, `TransportError` once closed, ValueError for a bad address.
        """
        size = len(data)
        if size > self.max_datagram:
            to = f" (to {addr if addr is not None else self.peer_address})"
            raise DatagramTooLarge(
                f"datagram of {size} bytes exceeds limit of {self.max_datagram} bytes{to}",
                self.local_address,
            )
        transport = self._transport
        if self._closed or transport is None:
            raise TransportError(
                f"datagram socket {self.local_address} is closed", self.local_address
            )
        if addr is None:
            transport.sendto(data)
        else:
            transport.sendto(data, _target(addr))

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """``sendto`` the peer of a connected socket, then wait if the loop is buffering sends."""
        self.sendto(data)
        if self._flow.paused:
            await self._flow.drain()

    async def drain(self) -> None:
        """Wait until the loop's send buffer for this socket is under its high-water mark."""
        await self._flow.drain()

    async def close(self) -> None:
        """Close the socket; a task waiting in ``recvfrom`` gets `TransportError` (``recv``: None)."""
        if not self._closed:
            self._closed = True
            self._wake()
            if self._transport is not None:
                self._transport.close()
            elif not self._lost.done():
                self._lost.set_result(None)
        await asyncio.shield(self._lost)

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        peer = f" <-> {self.peer_address}" if self.peer_address else ""
        return f"<DatagramSocket {self.local_address}{peer}{' closed' if self._closed else ''}>"

    # --- asyncio protocol callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.DatagramTransport without subclassing it.
        transport = cast(asyncio.DatagramTransport, transport)
        self._transport = transport
        self.local_address = _url_of(transport.get_extra_info("sockname"))
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_address = _url_of(peer)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        size = len(data)
        if size > self.max_datagram:
            self._put(
                DatagramTooLarge(
                    f"datagram of {size} bytes exceeds limit of {self.max_datagram} bytes "
                    f"(from {_url_of(addr)})",
                    self.local_address,
                )
            )
            return
        if self._queued + size > self._queue_limit:
            self.dropped += 1
            return
        self._queued += size
        self._put((data, _url_of(addr)))

    def error_received(self, exc: Exception) -> None:
        where = self.peer_address or self.local_address
        if isinstance(exc, ConnectionRefusedError):
            self._put(ConnectionRefused(f"connection refused by {where}", where))
        else:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._put(TransportError(f"udp socket error at {where}: {reason}", where))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._flow.close(
            TransportError(f"datagram socket {self.local_address} is closed", self.local_address)
        )
        self._wake()
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()

    def _put(self, item: tuple[bytes, str] | TransportError) -> None:
        self._queue.append(item)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def bind(
    url: str | Address,
    *,
    max_datagram: int = DEFAULT_MAX_DATAGRAM,
    queue_limit: int = _DEFAULT_QUEUE_LIMIT,
) -> DatagramSocket:
    """A UDP socket bound to ``udp://host:port`` (port 0 picks one; see ``local_address``).

    Raises `TransportError` naming the address when it cannot be bound.
    """
    address = _udp(url)
    return await _endpoint(
        address, "bind", max_datagram, queue_limit, local_addr=(address.host, address.port)
    )


async def connect_datagram(
    url: str | Address,
    *,
    max_datagram: int = DEFAULT_MAX_DATAGRAM,
    queue_limit: int = _DEFAULT_QUEUE_LIMIT,
) -> DatagramSocket:
    """A UDP socket connected to ``udp://host:port``: it sends there and receives only from there.

    UDP has no handshake, so nothing is known about the peer yet: if nobody listens, a later
    ``recv`` raises `ConnectionRefused`. Raises `TransportError` naming the address on failure.
    """
    address = _udp(url)
    return await _endpoint(
        address, "connect to", max_datagram, queue_limit, remote_addr=(address.host, address.port)
    )


async def _endpoint(
    address: Address, verb: str, max_datagram: int, queue_limit: int, **where: Any
) -> DatagramSocket:
    """A `DatagramSocket` for ``create_datagram_endpoint(**where)``; errors name the address."""
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await loop.create_datagram_endpoint(
            lambda: DatagramSocket(max_datagram=max_datagram, queue_limit=queue_limit), **where
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TransportError(f"cannot {verb} {address}: {reason}", str(address)) from None
    return protocol


def _udp(url: str | Address) -> Address:
    address = parse_address(url)
    if scheme_of(address).stream:
        raise ValueError(f"{address} is not a udp:// address")
    return address
