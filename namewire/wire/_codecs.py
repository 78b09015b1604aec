"""Body codecs: msgpack (the default) and JSON (for interop and debugging).

A codec turns the array form of an envelope into bytes and back. Decoding failures become
`ProtocolError`; values the codec cannot represent become `EncodeError`.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import msgpack

from ..errors import EncodeError, ProtocolError

__all__ = ["Codec", "JsonCodec", "MsgpackCodec", "codec_named", "sniff_codec"]


class Codec(Protocol):
    name: str

    def encode(self, item: Any) -> bytes: ...

    def decode(self, body: bytes) -> Any: ...


# One packer for the process. A Packer reserves a large buffer (128 KiB), far too much to keep per
# connection; pack() runs in C without releasing the GIL and resets itself, even after an error, so
# threads can share it.
_pack = msgpack.Packer(use_bin_type=True).pack


class MsgpackCodec:
    """msgpack with str/bin kept apart; maps may have non-string keys. Stateless: share it."""

    name = "msgpack"

    def encode(self, item: Any) -> bytes:
        try:
            packed: bytes = _pack(item)
            return packed
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"cannot encode with msgpack: {exc}") from None

    def decode(self, body: bytes) -> Any:
        try:
            return msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception as exc:  # noqa: BLE001 (msgpack raises many unrelated types)
            raise ProtocolError(
                f"undecodable msgpack body of {len(body)} bytes: {type(exc).__name__}: {exc}"
            ) from None


class JsonCodec:
    """UTF-8 JSON; no bytes values, and map keys must be strings."""

    name = "json"

    def encode(self, item: Any) -> bytes:
        try:
            return json.dumps(item, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise EncodeError(f"cannot encode with json: {exc}") from None

    def decode(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        # Deep nesting ("[[[[...") exhausts the parser's recursion limit: bad input, not a crash.
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"undecodable json body of {len(body)} bytes: {exc}") from None


_MSGPACK = MsgpackCodec()
_JSON = JsonCodec()


def codec_named(name: str) -> Codec:
    """The codec named ``"msgpack"`` or ``"json"`` (codecs are stateless and shared)."""
    if name == "msgpack":
        return _MSGPACK
    if name == "json":
        return _JSON
    raise ValueError(f"unknown codec {name!r}: expected 'msgpack' or 'json'")


def sniff_codec(first_body: bytes) -> Codec:
    """Pick the codec of a connection from its first frame (always a hello, an array).

    A JSON array starts with ``[``, a msgpack array with a byte in 0x90-0x9f or 0xdc/0xdd.
    """
    lead = first_body[:1]
    if lead == b"[":
        return _JSON
    if lead and (0x90 <= lead[0] <= 0x9F or lead[0] in (0xDC, 0xDD)):
        return _MSGPACK
    raise ProtocolError(
        f"first frame is not a hello in msgpack or json (starts with {bytes(lead)!r})"
    )
