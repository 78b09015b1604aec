"""The wire protocol, sans-I/O: frames, envelopes, codecs and the handshake. No sockets here.

Layers above feed bytes in and take envelopes out (`WireConnection`), or use the pieces directly
(`FrameDecoder`, `encode_frame`, codecs, `to_wire`/`from_wire`).
"""

from ._codecs import Codec, JsonCodec, MsgpackCodec, codec_named, sniff_codec
from ._connection import WireConnection
from ._envelopes import (
    PROTOCOL_VERSION,
    Call,
    Cancel,
    Envelope,
    Error,
    Hello,
    Msg,
    Ping,
    Pong,
    Reply,
    from_wire,
    to_wire,
)
from ._frames import DEFAULT_MAX_FRAME, HEADER_SIZE, FrameDecoder, encode_frame, oversize_message

# Error codes carried by `Error` envelopes.
ERROR_NO_SUCH_FUNCTION = "no_such_function"
ERROR_REMOTE = "remote_error"
ERROR_BAD_REQUEST = "bad_request"

__all__ = [
    "DEFAULT_MAX_FRAME",
    "ERROR_BAD_REQUEST",
    "ERROR_NO_SUCH_FUNCTION",
    "ERROR_REMOTE",
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "Call",
    "Cancel",
    "Codec",
    "Envelope",
    "Error",
    "FrameDecoder",
    "Hello",
    "JsonCodec",
    "Msg",
    "MsgpackCodec",
    "Ping",
    "Pong",
    "Reply",
    "WireConnection",
    "codec_named",
    "encode_frame",
    "from_wire",
    "oversize_message",
    "sniff_codec",
    "to_wire",
]
