"""The one interface between the protocol and the bytes: `Stream`, and the `StreamHandler` it feeds.

A namewire connection (`Session`) runs the sans-I/O `RpcConnection` of the wire layer over any
`Stream`. A stream is chosen by the URL scheme table (`_schemes.py`); each kind of stream is one
class here or beside it:

- `AsyncioStream`: an asyncio transport (tcp, unix, an inherited socket; later TLS). It delivers raw
  bytes (``cuts_frames`` False): the wire layer's `FrameDecoder` cuts them.
- ``NativeFrameStream`` (``_native_stream.py``): a connection on the C reactor, which cuts frames in C
  and hands the session a list of whole frame bodies per read (``cuts_frames`` True).
- a WebSocket stream (later): one envelope per message, so it cuts frames and takes frames.

Writes: a stream with ``takes_frames`` False takes bytes that already carry their length prefixes
(`RpcConnection.data_to_send`); one with ``takes_frames`` True takes bodies
(`RpcConnection.frames_to_send`). The session joins what one loop turn queues into one ``write``,
and writes early when 32 frames or 8 KiB are queued; a stream sends a write as soon as it can.

Flow control is the asyncio one: above its high-water mark a stream calls
``handler.writing_paused()``, and ``handler.writing_resumed()`` once drained to the low mark.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from typing import Protocol, cast

from ..errors import AuthError
from ._address import sockaddr_url
from ._tls import certificate_identity

__all__ = ["WRITE_HIGH_WATER", "AsyncioStream", "Stream", "StreamHandler", "TransportStream"]

# Buffered output above which a stream reports writing_paused (drains to a quarter of it).
WRITE_HIGH_WATER = 256 * 1024


class StreamHandler(Protocol):
    """What a stream reports to. Called from loop callbacks: never block, never raise."""

    def data_received(self, data: bytes) -> None:
        """Bytes read from a stream that does not cut frames."""

    def frames_received(self, frames: list[bytes]) -> None:
        """Whole frame bodies from a stream that cuts frames (in order; the list is the handler's)."""

    def writing_paused(self) -> None:
        """The output buffer went over the high-water mark."""

    def writing_resumed(self) -> None:
        """The output buffer drained to the low-water mark."""

    def stream_lost(self, exc: BaseException | None) -> None:
        """The stream is gone: None for a clean end, else why. Called exactly once."""


class Stream(abc.ABC):
    """One connected byte (or message) stream; see the module docstring.

    ``local_address`` and ``peer_address`` are URLs; ``where`` is the peer as error messages name it.
    Nothing is reported before `start`.
    """

    cuts_frames: bool = False
    takes_frames: bool = False
    local_address: str = ""
    peer_address: str = ""
    where: str = ""
    peer_identity: str | None = None  # from the peer's verified TLS certificate

    @abc.abstractmethod
    def start(self, handler: StreamHandler, *, max_frame: int) -> None:
        """Begin reporting to ``handler``; a stream that cuts frames enforces ``max_frame``
        (an oversize frame ends the stream with `FrameTooLarge` through ``stream_lost``)."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Queue ``data`` (framed bytes, or for ``takes_frames`` streams one frame body)."""

    @abc.abstractmethod
    def write_buffer_size(self) -> int:
        """Bytes queued and not yet handed to the kernel."""

    @abc.abstractmethod
    def pause_reading(self) -> None: ...

    @abc.abstractmethod
    def resume_reading(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Close after flushing what is queued; ``stream_lost`` follows."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Close at once, dropping what is queued; ``stream_lost`` follows."""


class TransportStream(Stream, asyncio.Protocol):
    """A `Stream` that is the protocol of an asyncio transport: the transport's flow control
    reaches the handler as ``writing_paused``/``writing_resumed``."""

    _handler: StreamHandler | None

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.writing_paused()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.writing_resumed()


class AsyncioStream(TransportStream):
    """A `Stream` over an asyncio transport; it is the transport's protocol."""

    def __init__(
        self,
        on_connected: Callable[[AsyncioStream], None] | None = None,
        *,
        certificate_given: bool = True,
    ) -> None:
        self._handler: StreamHandler | None = None
        self._certificate_given = certificate_given  # we presented a TLS client certificate
        self._transport: asyncio.Transport | None = None
        self._on_connected = on_connected
        self._tls = False
        self._heard = False

    # -- asyncio protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        ssl_object = transport.get_extra_info("ssl_object")
        scheme = "unix" if sock is not None and sock.family.name == "AF_UNIX" else "tcp"
        if ssl_object is not None:
            scheme = "tls"
            self._tls = True
            self.peer_identity = certificate_identity(ssl_object)
        self.local_address = sockaddr_url(scheme, transport.get_extra_info("sockname"))
        self.peer_address = sockaddr_url(scheme, transport.get_extra_info("peername"))
        if self.peer_address == "unix://":
            self.peer_address = self.local_address
        self.where = self.peer_address
        if self._on_connected is not None:
            on_connected, self._on_connected = self._on_connected, None
            on_connected(self)

    def data_received(self, data: bytes) -> None:
        assert self._handler is not None
        self._heard = True
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # a namewire session ends both ways

    def connection_lost(self, exc: Exception | None) -> None:
        handler, self._handler = self._handler, None
        if exc is None and self._tls and not self._heard and not self._certificate_given:
            # With TLS 1.3 a server checks the client's certificate after the client's side of the
            # handshake is done, and its refusal arrives as a plain close.
            exc = AuthError(
                "closed right after the TLS handshake, before a word: a listener with mutual TLS "
                "does that to a client without a certificate (--tls-cert/--tls-key)",
                address=self.peer_address,
            )
        if handler is not None:
            handler.stream_lost(exc)

    # -- Stream ---------------------------------------------------------------------------------

    def start(self, handler: StreamHandler, *, max_frame: int) -> None:
        self._handler = handler

    def write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
