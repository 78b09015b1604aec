"""The sans-I/O state of one connection: handshake, codec choice, framing, envelopes.

Feed it what the socket read (`receive_data`), send what it returns (`hello`, `encode`). The side
that connects picks the codec and speaks first; the side that accepts learns the codec from the first
frame and answers its hello in kind, so a JSON client needs no configuration on the server.
"""

from __future__ import annotations

from typing import Any

from ..errors import ProtocolError
from ._codecs import Codec, codec_named, sniff_codec
from ._envelopes import (
    KIND_CALL,
    KIND_MSG,
    KIND_REPLY,
    PROTOCOL_VERSION,
    Envelope,
    Hello,
    from_wire,
    to_wire,
)
from ._frames import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame

__all__ = ["WireConnection"]


class WireConnection:
    """One end of a namewire connection, without the socket.

    ``codec`` is the codec name for a connecting side; an accepting side passes None and adopts the
    peer's. Until the peer's hello has arrived, ``peer`` is None; the hello itself is returned by
    `receive_data` like any other envelope, after its version has been checked.
    """

    __slots__ = ("_codec", "_decoder", "_error", "info", "name", "origin", "peer")

    def __init__(
        self,
        name: str,
        *,
        codec: str | None = "msgpack",
        info: dict[str, Any] | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        origin: str = "",
    ) -> None:
        self.name = name
        self.info = info or {}
        self.origin = origin
        self.peer: Hello | None = None
        self._codec: Codec | None = codec_named(codec) if codec is not None else None
        self._decoder = FrameDecoder(max_frame, origin)
        self._error: str | None = None  # the message of the error that killed the connection

    def set_origin(self, origin: str) -> None:
        """Name the peer's address in error messages (an accepting side learns it late)."""
        self.origin = origin
        self._decoder.origin = origin

    @property
    def codec(self) -> str | None:
        return self._codec.name if self._codec is not None else None

    def hello(self) -> bytes:
        """Our hello frame. An accepting side can only call this after the peer's hello arrived."""
        if self._codec is None:
            raise RuntimeError("the codec is not known until the peer's hello has arrived")
        return self.encode(Hello(PROTOCOL_VERSION, self.name, self.info))

    def encode(self, envelope: Envelope) -> bytes:
        """The frame that carries ``envelope``. Raises `EncodeError` for unencodable values."""
        assert self._codec is not None, "encode before the codec is known"
        return encode_frame(self._codec.encode(to_wire(envelope)))

    # The three kinds that carry traffic, framed without building the envelope object first (the
    # object and its array form cost more than the msgpack encoding itself).

    def encode_call(self, call_id: int, func: str, args: Any) -> bytes:
        """The frame of ``Call(call_id, func, args)``."""
        assert self._codec is not None, "encode before the codec is known"
        return encode_frame(self._codec.encode((KIND_CALL, call_id, func, args)))

    def encode_reply(self, call_id: int, result: Any) -> bytes:
        """The frame of ``Reply(call_id, result)``."""
        assert self._codec is not None, "encode before the codec is known"
        return encode_frame(self._codec.encode((KIND_REPLY, call_id, result)))

    def encode_msg(self, payload: Any) -> bytes:
        """The frame of ``Msg(payload)``."""
        assert self._codec is not None, "encode before the codec is known"
        return encode_frame(self._codec.encode((KIND_MSG, payload)))

    def receive_data(self, data: bytes) -> list[Envelope]:
        """Envelopes completed by ``data``. Raises `ProtocolError`; the connection is then dead.

        Once it has raised, every later call raises the same error instead of reading on from a
        stream whose state is unknown.
        """
        if self._error is not None:
            raise ProtocolError(self._error)
        try:
            return self._receive(data)
        except ProtocolError as exc:
            self._error = str(exc)
            raise

    def _receive(self, data: bytes) -> list[Envelope]:
        bodies = self._decoder.feed(data)
        if not bodies:
            return []
        codec = self._codec
        if self.peer is None:
            if codec is None:
                codec = self._codec = sniff_codec(bodies[0])
            first = self._checked_hello(from_wire(codec.decode(bodies[0])))
            return [first, *[from_wire(codec.decode(body)) for body in bodies[1:]]]
        assert codec is not None
        return [from_wire(codec.decode(body)) for body in bodies]

    def _checked_hello(self, envelope: Envelope) -> Hello:
        where = f" from {self.origin}" if self.origin else ""
        if not isinstance(envelope, Hello):
            raise ProtocolError(f"expected hello{where}, got {type(envelope).__name__.lower()}")
        if envelope.version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"peer {envelope.name!r}{where} speaks protocol version {envelope.version}, "
                f"this side speaks {PROTOCOL_VERSION}"
            )
        self.peer = envelope
        return envelope
