"""The envelopes a frame body carries, one small immutable class per kind.

On the wire an envelope is an array whose first item is its kind code and whose other items are the
fields below, in order: ``[2, 17, "plus", [1, 2]]`` is ``Call(id=17, func="plus", args=[1, 2])``.
Arrays keep frames small and decoding cheap; the field order is part of the protocol.
"""

from __future__ import annotations

import reprlib
from typing import Any, NamedTuple

from ..errors import ProtocolError

__all__ = [
    "ERROR_AUTH",
    "ERROR_BAD_REQUEST",
    "ERROR_BUSY",
    "ERROR_FORBIDDEN",
    "ERROR_NO_SUCH_FUNCTION",
    "ERROR_REMOTE",
    "ERROR_TOO_LARGE",
    "PROTOCOL_VERSION",
    "Call",
    "Cancel",
    "Credit",
    "Envelope",
    "Error",
    "Hello",
    "Msg",
    "Ping",
    "Pong",
    "Reply",
    "from_wire",
    "to_wire",
]

PROTOCOL_VERSION = 1

# Error codes carried by `Error` envelopes.
ERROR_NO_SUCH_FUNCTION = "no_such_function"
ERROR_REMOTE = "remote_error"
ERROR_BAD_REQUEST = "bad_request"
ERROR_TOO_LARGE = "too_large"  # the result did not fit in the caller's frame limit
ERROR_BUSY = "busy"  # over the callee's limit of running calls: refused before it started
ERROR_FORBIDDEN = "forbidden"  # the callee's policy file does not let the caller's identity call it
# The hello was refused (authentication): the one frame the refusing side sends before closing.
ERROR_AUTH = "auth"


class Hello(NamedTuple):
    """First envelope each side sends: protocol version, node name, extra info (auth, codec)."""

    version: int
    name: str
    info: dict[str, Any]


class Msg(NamedTuple):
    """A one-way message; the sender is the name given in the connection's hello."""

    payload: Any


class Call(NamedTuple):
    """Run ``func(*args)`` and answer with a `Reply` or an `Error` carrying the same ``id``.

    ``meta`` is the call's metadata, a map with short keys (None or absent on the wire: none):
    ``"d"`` the caller's remaining budget in milliseconds (its deadline), ``"r"`` the request id
    shared by every call made on behalf of one request, ``"t"`` W3C trace context (reserved).
    Unknown keys are ignored, so the map can grow without a new protocol version.
    """

    id: int
    func: str
    args: list[Any]
    meta: dict[str, Any] | None = None


class Reply(NamedTuple):
    id: int
    result: Any


class Error(NamedTuple):
    """A call failed. ``code`` is one of the ``ERROR_*`` codes of `namewire.wire`."""

    id: int
    code: str
    type: str
    message: str
    traceback: str


class Cancel(NamedTuple):
    """The caller gave up on call ``id``; an async function still running is cancelled."""

    id: int


class Ping(NamedTuple):
    token: int


class Pong(NamedTuple):
    token: int


class Credit(NamedTuple):
    """The receiver's application took ``messages`` messages of ``size`` bytes in all out of its
    mailbox: the sender may have that many more unread there (see `RpcConnection`)."""

    messages: int
    size: int


Envelope = Hello | Msg | Call | Reply | Error | Cancel | Ping | Pong | Credit

# Kind codes: the first item of every envelope array. Never renumber.
_KINDS: tuple[type[Any], ...] = (Hello, Msg, Call, Reply, Error, Cancel, Ping, Pong, Credit)
_CODE = {cls: code for code, cls in enumerate(_KINDS)}
KIND_MSG = _CODE[Msg]
KIND_CALL = _CODE[Call]
KIND_REPLY = _CODE[Reply]
KIND_CREDIT = _CODE[Credit]
# Expected type of each field, checked on the way in so layers above can trust what they get.
_FIELD_TYPES: dict[type[Any], tuple[type | tuple[type, ...] | None, ...]] = {
    Hello: (int, str, dict),
    Msg: (None,),
    Call: (int, str, list, (dict, type(None))),
    Reply: (int, None),
    Error: (int, str, str, str, str),
    Cancel: (int,),
    Ping: (int,),
    Pong: (int,),
    Credit: (int, int),
}


def to_wire(envelope: Envelope) -> tuple[Any, ...]:
    """The array form of ``envelope``, ready for a codec."""
    return (_CODE[type(envelope)], *envelope)


def from_wire(item: Any) -> Envelope:
    """Build the envelope from its decoded array form; raise `ProtocolError` naming what is wrong."""
    # Fast path for the kinds that carry traffic: exact type checks, one tuple built.
    if type(item) is list and item and type(item[0]) is int:
        code = item[0]
        size = len(item)
        if code == _CALL_CODE and size == 5:
            meta = item[4]
            if (
                type(item[1]) is int
                and type(item[2]) is str
                and type(item[3]) is list
                and (type(meta) is dict or meta is None)
            ):
                return _new(Call, (item[1], item[2], item[3], meta))
        elif code == _REPLY_CODE and size == 3:
            if type(item[1]) is int:
                return _new(Reply, (item[1], item[2]))
        elif code == _MSG_CODE and size == 2:
            return _new(Msg, (item[1],))
    return _checked(item)


_new = tuple.__new__
_CALL_CODE = KIND_CALL
_REPLY_CODE = KIND_REPLY
_MSG_CODE = KIND_MSG


def _checked(item: Any) -> Envelope:
    """The general path, which also explains what is wrong with a bad envelope."""
    if not isinstance(item, list | tuple) or not item:
        raise ProtocolError(f"envelope must be a non-empty array, got {type(item).__name__}")
    code = item[0]
    if type(code) is not int or not 0 <= code < len(_KINDS):
        raise ProtocolError(f"unknown envelope kind {reprlib.repr(code)}")
    cls = _KINDS[code]
    types = _FIELD_TYPES[cls]
    if cls is Call and len(item) == len(types):
        item = [*item, None]  # metadata is optional on the wire (a minimal JSON client omits it)
    if len(item) != len(types) + 1:
        needed = "3 or 4 fields" if cls is Call else (
            f"{len(types)} field{'s' if len(types) != 1 else ''}"
        )
        raise ProtocolError(f"{cls.__name__.lower()} envelope needs {needed}, got {len(item) - 1}")
    for name, expected, value in zip(cls._fields, types, item[1:], strict=True):
        if expected is None:
            continue
        # bool is a subclass of int, but True is neither a call id nor a protocol version.
        if not isinstance(value, expected) or (expected is int and type(value) is bool):
            raise ProtocolError(
                f"{cls.__name__.lower()} envelope field {name!r} must be "
                f"{_type_name(expected)}, got {type(value).__name__}"
            )
    return cls._make(item[1:])  # type: ignore[no-any-return]


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        return " or ".join(t.__name__ for t in expected)
    return expected.__name__
