"""Transports: streams chosen by URL scheme, and the wire protocol run over them. Knows addresses,
never service names.

The public low-level API is the coroutine sockets: `listen` / `connect` (tcp://, unix://, udp://),
`StreamSocket` (a packet at a time: length-prefixed frames or raw reads), `DatagramSocket` and
`bind` for UDP, and the `Listener` that serves accepted connections. `Session` runs the wire layer's
`RpcConnection` over a `Stream` (`connect_session`, `listen_sessions`, `session_over`); `SCHEMES`
is the one table of URL schemes.
"""

from ._address import Address, parse_address
from ._datagram import DEFAULT_MAX_DATAGRAM, DatagramSocket, bind, connect_datagram
from ._endpoints import DEFAULT_CONNECT_TIMEOUT, open_stream, start_stream_server
from ._flow import WriteFlow
from ._policy import Policy
from ._schemes import SCHEMES, Scheme, scheme_of
from ._security import InsecureListen, Security, load_secret
from ._session import Session, SessionHandler
from ._session_io import connect_session, listen_sessions, session_over
from ._sockets import Listener, connect, listen
from ._stream import DEFAULT_QUEUE_LIMIT, StreamSocket
from ._streams import AsyncioStream, Stream, StreamHandler
from ._tls import TlsConfig, certificate_identity

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_DATAGRAM",
    "DEFAULT_QUEUE_LIMIT",
    "SCHEMES",
    "Address",
    "AsyncioStream",
    "DatagramSocket",
    "InsecureListen",
    "Listener",
    "Policy",
    "Scheme",
    "Security",
    "Session",
    "SessionHandler",
    "Stream",
    "StreamHandler",
    "StreamSocket",
    "TlsConfig",
    "WriteFlow",
    "bind",
    "certificate_identity",
    "connect",
    "connect_datagram",
    "connect_session",
    "listen",
    "listen_sessions",
    "load_secret",
    "open_stream",
    "parse_address",
    "scheme_of",
    "session_over",
    "start_stream_server",
]
