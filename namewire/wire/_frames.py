"""Length-prefixed frames: 4-byte big-endian body length, then the body.

`FrameDecoder` is fed bytes in any chunking and returns whole frame bodies. The size limit is checked
from the length prefix, before a single byte of the body is buffered.
"""

from __future__ import annotations

from struct import Struct

from ..errors import FrameTooLarge, ProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "FrameDecoder",
    "encode_frame",
    "join_frames",
    "oversize_message",
    "pack_header",
    "unpack_header",
]

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
HEADER_SIZE = 4
_HEADER = Struct(">I")
# The one place Python packs and reads a frame header; `StreamSocket` binds them (hot path).
pack_header = _HEADER.pack
unpack_header = _HEADER.unpack_from
_unpack_header = unpack_header


def encode_frame(body: bytes) -> bytes:
    """Return ``body`` with its length prefix."""
    return pack_header(len(body)) + body


def join_frames(bodies: list[bytes]) -> bytes:
    """The frames of ``bodies``, back to back, as one bytes object (one copy of each body)."""
    if len(bodies) == 1:
        return pack_header(len(bodies[0])) + bodies[0]
    parts: list[bytes] = []
    for body in bodies:
        parts.append(pack_header(len(body)))
        parts.append(body)
    return b"".join(parts)


class FrameDecoder:
    """Streaming frame decoder (sans-I/O).

    ``feed(data)`` returns the bodies of the frames completed by ``data``, possibly none. A prefix that
    announces more than ``max_size`` bytes raises `ProtocolError` at once; after that the decoder is
    unusable, as the stream has lost its framing. ``origin`` is added to error messages (an address).
    """

    __slots__ = ("_buf", "_error", "max_size", "origin")

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME, origin: str = "") -> None:
        if max_size <= 0:
            raise ValueError(f"max_size must be positive, not {max_size}")
        self._buf = bytearray()
        self._error: str | None = None  # the message of the error that killed the stream
        self.max_size = max_size
        self.origin = origin

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Bodies of the frames completed by ``data``; `ProtocolError` for an oversize prefix.

        Once it has raised, every later call raises the same error: the framing is lost.
        """
        if self._error is not None:
            raise ProtocolError(self._error)
        buf = self._buf
        buffered = bool(buf)
        if buffered:
            buf += data
            # A view, so that taking a body out of the buffer copies it once, not twice.
            source: bytes | bytearray | memoryview = memoryview(buf)
        else:
            # Fast path: parse straight from the read, buffering only an incomplete tail.
            source = data
        end = len(source)
        pos = 0
        frames: list[bytes] = []
        max_size = self.max_size
        try:
            while end - pos >= HEADER_SIZE:
                (size,) = _unpack_header(source, pos)
                if size > max_size:
                    self._error = self._oversize(size)
                    raise FrameTooLarge(size, max_size, self.origin or None)
                stop = pos + HEADER_SIZE + size
                if stop > end:
                    break
                frames.append(bytes(source[pos + HEADER_SIZE : stop]))
                pos = stop
        finally:
            if buffered:
                # Release the view even when raising, or the buffer could never be resized again.
                assert isinstance(source, memoryview)
                source.release()
            if self._error is not None:
                buf.clear()
        if buffered:
            del buf[:pos]
        elif pos < end:
            buf += memoryview(data)[pos:]
        return frames

    def _oversize(self, size: int) -> str:
        return oversize_message(size, self.max_size, self.origin)


def oversize_message(size: int, max_size: int, origin: str = "") -> str:
    """The `FrameTooLarge` text for a frame announcing ``size`` bytes over the ``max_size`` limit;
    ``origin`` (an address) is named when given."""
    return str(FrameTooLarge(size, max_size, origin or None))
