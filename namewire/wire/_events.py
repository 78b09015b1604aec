"""What an `RpcConnection` reports: small immutable events, pulled with ``events_received()``.

Calls and cancels from the peer are reported as the envelopes themselves (`Call`, `Cancel`): they
already are small immutable records, and building a second object per call would cost as much as
decoding it. Everything else has a class here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._envelopes import Call, Cancel

__all__ = [
    "Answered",
    "Closed",
    "Event",
    "Failed",
    "MessageReceived",
    "Opened",
    "PongReceived",
    "SenderBlocked",
    "WindowOpened",
]


class Opened(NamedTuple):
    """The peer's hello arrived and was accepted: ``peer`` is its node name."""

    peer: str
    info: dict[str, Any]


class MessageReceived(NamedTuple):
    """A message from the peer; ``size`` is its encoded size, for `RpcConnection.message_consumed`."""

    payload: Any
    size: int


class Answered(NamedTuple):
    """The call filed with ``handle`` got its result."""

    handle: Any
    result: Any


class Failed(NamedTuple):
    """The call filed with ``handle`` failed: ``error`` is the exception its caller gets
    (`RemoteError`, `NoSuchFunction`, `CallTimeout`, `PeerLost`)."""

    handle: Any
    error: BaseException


class WindowOpened(NamedTuple):
    """The peer returned message credit (or its hello gave the window): a `send_msg` that was
    refused for want of credit may be tried again."""


class SenderBlocked(NamedTuple):
    """Receiving side: the peer has filled its window, ``unread`` messages of ``unread_bytes``
    bytes are waiting to be consumed. Reported once per episode (until half of it is consumed)."""

    unread: int
    unread_bytes: int


class PongReceived(NamedTuple):
    """The peer answered a liveness ping after ``rtt`` seconds."""

    rtt: float


class Closed(NamedTuple):
    """The connection is over: the stream should be aborted. ``reason`` is why (`ProtocolError`,
    `PeerLost` after unanswered pings, `AuthError`); None when the stream itself ended."""

    reason: BaseException | None


Event = (
    Opened
    | MessageReceived
    | Call
    | Cancel
    | Answered
    | Failed
    | WindowOpened
    | SenderBlocked
    | PongReceived
    | Closed
)
