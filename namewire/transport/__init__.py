"""Transports: asyncio protocols over the wire layer. Knows addresses, never service names.

The public low-level API is the coroutine sockets: `listen` / `connect` (tcp://, unix://, udp://),
`StreamSocket` (a packet at a time: length-prefixed frames or raw reads), `DatagramSocket` and
`bind` for UDP, and the `Listener` that serves accepted connections. `Session` is the namewire
connection the node uses; `open_stream` / `start_stream_server` / `WriteFlow` are its building blocks.
"""

from ._address import Address, parse_address
from ._datagram import DEFAULT_MAX_DATAGRAM, DatagramSocket, bind, connect_datagram
from ._endpoints import DEFAULT_CONNECT_TIMEOUT, open_stream, start_stream_server
from ._flow import WriteFlow
from ._session import Session, SessionHandler
from ._sockets import Listener, connect, listen
from ._stream import DEFAULT_QUEUE_LIMIT, StreamSocket

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_DATAGRAM",
    "DEFAULT_QUEUE_LIMIT",
    "Address",
    "DatagramSocket",
    "Listener",
    "Session",
    "SessionHandler",
    "StreamSocket",
    "WriteFlow",
    "bind",
    "connect",
    "connect_datagram",
    "listen",
    "open_stream",
    "parse_address",
    "start_stream_server",
]
