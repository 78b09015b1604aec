"""`StreamSocket`: a coroutine socket over a TCP or Unix-socket connection, packet at a time.

The socket is itself the asyncio protocol of its transport, so a received chunk goes from the loop's
read callback to a waiting ``recv()`` without an intermediate object. Framed mode (the default) cuts
the byte stream into frames with `namewire.wire.FrameDecoder`; raw mode hands out whatever arrived.

Writes. uvloop buffers every ``transport.write`` made during one loop iteration and flushes them
together with one ``writev`` at its end (it writes at once only above the high-water mark), so on
uvloop ``send`` writes straight to the transport. The standard loop instead tries ``send(2)`` on every
write, so there the socket corks: writes of one loop turn are joined and written by one ``call_soon``
callback, which runs after everything already scheduled for this turn (or at once when they pass
``_CORK_LIMIT`` bytes).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import cast

from ..errors import ConnectionReset, ProtocolError, TransportError
from ..wire import DEFAULT_MAX_FRAME, HEADER_SIZE, FrameDecoder, pack_header, unpack_header
from ._address import sockaddr_url
from ._flow import WriteFlow

__all__ = ["DEFAULT_QUEUE_LIMIT", "StreamSocket"]

DEFAULT_QUEUE_LIMIT = 1024 * 1024
"""Bytes of received packets held for ``recv()`` before reading from the socket pauses."""

# The wire layer's frame header, bound here: one function call less per send on the hot path.
_pack_header = pack_header
_unpack_header = unpack_header
_MAX_BODY = 2**32 - 1
# Up to this size, header and body are joined into one bytes object (one buffer for the loop);
# above it they are written as two buffers, so a big body is not copied just to prepend 4 bytes.
_JOIN_LIMIT = 64 * 1024
# A cork holding this much is written at once rather than at the end of the turn.
_CORK_LIMIT = 256 * 1024
# How long `close()` lets buffered writes drain by default before it drops them.
_CLOSE_LINGER = 10.0


def _loop_batches_writes(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.partition(".")[0] == "uvloop"


class SocketState:
    """What both stream-socket implementations say about their state (``closed``, ``repr``)."""

    __slots__ = ()
    _closing: bool
    _lost: asyncio.Future[None]
    local_address: str
    peer_address: str

    @property
    def closed(self) -> bool:
        """True once ``close()``/``abort()`` was called or the connection was lost."""
        return self._closing or self._lost.done()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<StreamSocket {self.local_address} <-> {self.peer_address} {state}>"


class StreamSocket(SocketState, asyncio.Protocol, metaclass=abc.ABCMeta):
    """One stream connection; made by `listen` (one per accepted peer) and `connect`.

    Contract:

    - ``await recv()`` returns the next packet, or None once the peer has closed its side cleanly
      (or this socket was closed). Packets queued before a failure are still returned first.
    - ``await send(packet)`` returns at once while the transport's write buffer is under its
      high-water mark and waits for it to drain above; at most one packet over the mark is buffered.
    - Received packets wait in a queue of at most ``queue_limit`` bytes (plus the chunk that crossed
      it); above it reading pauses, so a peer that sends to a socket nobody reads costs bounded memory.
    - Only one task may wait in ``recv()`` at a time; several tasks may ``send()``.

    The asyncio protocol methods (``connection_made`` and so on) are for the transport only.
    """

    __slots__ = (
        "_closing",
        "_cork",
        "_cork_size",
        "_decoder",
        "_finished",
        "_flow",
        "_framed",
        "_loop",
        "_lost",
        "_max_frame",
        "_on_connected",
        "_queue",
        "_queue_limit",
        "_queued",
        "_reading_paused",
        "_recv_exc",
        "_send_exc",
        "_transport",
        "_waiter",
        "_where",
        "_writer",
        "local_address",
        "peer_address",
    )

    def __init__(
        self,
        *,
        framed: bool = True,
        max_frame: int = DEFAULT_MAX_FRAME,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        on_connected: Callable[[StreamSocket], None] | None = None,
    ) -> None:
        if max_frame <= 0 or max_frame > _MAX_BODY:
            raise ValueError(f"max_frame must be in 1..{_MAX_BODY}, not {max_frame}")
        if queue_limit <= 0:
            raise ValueError(f"queue_limit must be positive, not {queue_limit}")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._framed = framed
        self._max_frame = max_frame
        self._decoder: FrameDecoder | None = None
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._queue_limit = queue_limit
        self._reading_paused = False
        self._waiter: asyncio.Future[bytes | None] | None = None
        self._finished = False  # no packet will be added to the queue any more
        self._recv_exc: BaseException | None = None  # raised by recv() once the queue is empty
        self._send_exc: TransportError | None = None
        self._flow = WriteFlow(loop)
        self._writer: Callable[[bytes], object] = _not_connected
        self._cork: list[bytes] | None = None if _loop_batches_writes(loop) else []
        self._cork_size = 0
        self._closing = False
        self._lost: asyncio.Future[None] = loop.create_future()
        self._on_connected = on_connected
        self._where = ""
        self.local_address = ""
        """This end's URL, e.g. ``tcp://127.0.0.1:8011``."""
        self.peer_address = ""
        """The peer's URL. An accepted Unix-socket peer is usually unnamed; then it is the path the
        peer connected to, the same as ``local_address``."""

    # --- the public face -------------------------------------------------------------------------

    async def recv(self) -> bytes | None:
        """The next packet: a frame body (framed mode) or the bytes of one read (raw mode).

        Returns None at clean end of stream: the peer closed after a whole frame, or this socket was
        closed. Raises `ProtocolError` after a frame over ``max_frame`` (the connection is closed),
        `ConnectionReset` when the peer reset the connection or closed it in the middle of a frame,
        and RuntimeError if another task is already waiting in ``recv()``.
        """
        queue = self._queue
        if queue:
            packet = queue.popleft()
            self._queued -= len(packet)
            if self._reading_paused and self._queued <= self._queue_limit >> 1:
                self._resume_reading()
            return packet
        if self._finished:
            if self._recv_exc is not None:
                raise self._recv_exc
            return None
        if self._waiter is not None:
            raise RuntimeError(f"recv() on {self._where} is already awaited by another task")
        waiter: asyncio.Future[bytes | None] = self._loop.create_future()
        self._waiter = waiter
        try:
            return await waiter
        except asyncio.CancelledError:
            if self._waiter is waiter:
                self._waiter = None
            elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # A packet was handed over just as we were cancelled: keep it for the next recv().
                handed = waiter.result()
                if handed is not None:
                    queue.appendleft(handed)
                    self._queued += len(handed)
            raise

    async def send(self, packet: bytes | bytearray | memoryview) -> None:
        """Send one packet (framed: as one frame). Waits only while the write buffer is too full:
        at most one packet over the transport's high-water mark is buffered.

        ``packet`` is copied if it is not ``bytes``, so the caller may reuse its buffer. Raises
        `ConnectionReset` once the connection is lost, `TransportError` after ``close()``, and
        ValueError for a packet over 4 GiB - 1 bytes in framed mode.
        """
        if self._send_exc is not None:
            raise self._send_exc
        if type(packet) is not bytes:
            packet = bytes(packet)
        write = self._writer
        if self._framed:
            size = len(packet)
            if size <= _JOIN_LIMIT:
                write(_pack_header(size) + packet)
            else:
                if size > _MAX_BODY:
                    raise ValueError(f"packet of {size} bytes does not fit in a frame")
                write(_pack_header(size))
                write(packet)
        elif packet:
            write(packet)
        if self._flow.paused:
            await self._flow.drain()

    async def close(self, *, linger: float = _CLOSE_LINGER) -> None:
        """Close the connection: buffered writes are flushed first, for up to ``linger`` seconds
        (a peer that does not read could hold them forever), then dropped.

        A task waiting in ``recv()`` gets None. Safe to call more than once and from any task.
        """
        self._start_close()
        if not self._lost.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._lost), linger)
            except TimeoutError:
                self.abort()
                await self._lost

    def abort(self) -> None:
        """Close the connection at once, dropping buffered writes; a waiting ``recv()`` gets None."""
        self._start_close()
        if self._transport is not None:
            self._transport.abort()

    # --- asyncio protocol callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._writer = transport.write if self._cork is None else self._write_corked
        self.local_address, self.peer_address, where = stream_names(
            transport.get_extra_info("socket"),
            transport.get_extra_info("sockname"),
            transport.get_extra_info("peername"),
        )
        self._where = where
        if self._framed:
            self._decoder = FrameDecoder(self._max_frame, where)
        if self._on_connected is not None:
            self._on_connected(self)
            self._on_connected = None

    def data_received(self, data: bytes) -> None:
        decoder = self._decoder
        if decoder is None:
            packets = [data]
        else:
            # Fast path for the common case of one whole frame per read with recv() waiting:
            # skips the decoder's buffer bookkeeping and the list of frames.
            waiter = self._waiter
            if waiter is not None and not decoder.buffered and len(data) > HEADER_SIZE:
                (size,) = _unpack_header(data)
                if size + HEADER_SIZE == len(data) and size <= self._max_frame:
                    self._waiter = None
                    if not waiter.done():
                        waiter.set_result(data[HEADER_SIZE:])
                        return
                    self._waiter = waiter
            try:
                packets = decoder.feed(data)
            except ProtocolError as exc:
                self._fail(exc)
                return
            if not packets:
                return
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                # Hand the first packet straight to the waiting recv(): no queue round trip.
                waiter.set_result(packets[0])
                if len(packets) == 1:
                    return
                del packets[0]
        self._queue.extend(packets)
        self._queued += sum(map(len, packets))
        if self._queued > self._queue_limit and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        decoder = self._decoder
        if decoder is not None and decoder.buffered:
            self._finish(
                broken_stream("connection closed", self._where, self.peer_address, decoder.buffered)
            )
            return False
        self._finish(None)
        # Keep our write side open: the handler may still answer after recv() returned None.
        # TLS has no half-close (asyncio warns when asked for one).
        transport = self._transport
        return transport is None or transport.get_extra_info("ssl_object") is None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._send_exc is None:
            self._send_exc = ConnectionReset(
                f"connection to {self._where} is closed", self.peer_address
            )
        self._flow.close(self._send_exc)
        if exc is not None and not self._closing:
            reason = (
                "connection reset"
                if isinstance(exc, ConnectionResetError)
                else f"connection lost ({exc})"
            )
            buffered = self._decoder.buffered if self._decoder is not None else 0
            self._finish(broken_stream(reason, self._where, self.peer_address, buffered))
        else:
            self._finish(None)
        if self._cork:
            self._cork.clear()
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()

    # --- internals -------------------------------------------------------------------------------

    def _write_corked(self, data: bytes) -> None:
        cork = self._cork
        assert cork is not None
        if not cork:
            self._loop.call_soon(self._uncork)
        cork.append(data)
        self._cork_size += len(data)
        if self._cork_size >= _CORK_LIMIT:
            self._uncork()

    def _uncork(self) -> None:
        cork = self._cork
        if not cork:
            return
        data = cork[0] if len(cork) == 1 else b"".join(cork)
        cork.clear()
        self._cork_size = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _resume_reading(self) -> None:
        self._reading_paused = False
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _finish(self, exc: BaseException | None) -> None:
        """No more packets: recv() drains the queue, then raises ``exc`` or returns None."""
        if self._finished:
            return
        self._finished = True
        self._recv_exc = exc
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    def _fail(self, exc: ProtocolError) -> None:
        """The peer broke the protocol: end this connection (only this one) with ``exc``."""
        self._finish(exc)
        if self._send_exc is None:
            self._send_exc = ConnectionReset(
                f"connection to {self._where} was closed: {exc}", self.peer_address
            )
        assert self._transport is not None
        self._transport.abort()

    def _start_close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._send_exc is None:
            self._send_exc = TransportError(f"socket to {self._where} is closed", self.peer_address)
        self._finish(None)
        self._uncork()
        transport = self._transport
        if transport is not None:
            transport.close()
        elif not self._lost.done():
            self._lost.set_result(None)


def _not_connected(data: bytes) -> None:
    raise RuntimeError("send() before the connection was made")


def broken_stream(reason: str, where: str, peer_address: str, buffered: int) -> ConnectionReset:
    """What ``recv()`` raises once a connection ended badly: ``reason`` says how, ``buffered`` is the
    part of a frame it cut off (0: it ended between frames)."""
    partial = f" in the middle of a frame ({buffered} bytes of it received)" if buffered else ""
    return ConnectionReset(f"{reason} by {where}{partial}", peer_address)


def stream_names(
    sock: socket.socket | None, sockname: object, peername: object
) -> tuple[str, str, str]:
    """(local URL, peer URL, the peer as error messages name it) of a stream connection.

    An accepted Unix-socket peer is usually unnamed: its URL is then the path it connected to, and
    error messages add its pid.
    """
    unix = sock is not None and sock.family == socket.AF_UNIX
    scheme = "unix" if unix else "tcp"
    local = sockaddr_url(scheme, sockname)
    peer = sockaddr_url(scheme, peername)
    if unix and peer == "unix://":
        assert sock is not None
        return local, local, f"{local} (peer pid {_peer_pid(sock)})"
    return local, peer, peer


def _peer_pid(sock: socket.socket) -> str:
    """The pid of a Unix-socket peer where the OS tells it (Linux SO_PEERCRED), else "?"."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return "?"
    with contextlib.suppress(OSError):
        pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, 12))
        return str(pid)
    return "?"

