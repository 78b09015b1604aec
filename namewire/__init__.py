"""namewire: distributed Python services that talk to each other by name.

Layout, bottom up (imports only point down): ``runtime/`` (loop entry point, light processes, timers,
channels, async logging and file IO), ``wire/`` (sans-I/O frames, envelopes, codecs, handshake),
``transport/`` (asyncio sockets over the wire layer), ``registry/`` (name service and etcd clients),
``node/`` (`Node`: names, connections, calls, mailbox), ``nameservice/`` (the built-in name service),
and on top ``sync`` (blocking facade) and ``cli/``. This module only re-exports the public names.
"""

from .errors import (
    AuthError,
    CallTimeout,
    ChannelClosed,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    DatagramTooLarge,
    EncodeError,
    NameNotFound,
    NamewireError,
    NameTaken,
    NoSuchFunction,
    PeerLost,
    ProtocolError,
    RegistryUnavailable,
    RemoteError,
    TransportError,
)
from .node import Caller, Node
from .runtime import new_event_loop, run

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "CallTimeout",
    "Caller",
    "Node",
    "ChannelClosed",
    "ConnectTimeout",
    "ConnectionRefused",
    "ConnectionReset",
    "DatagramTooLarge",
    "EncodeError",
    "NameNotFound",
    "NameTaken",
    "NamewireError",
    "NoSuchFunction",
    "PeerLost",
    "ProtocolError",
    "RegistryUnavailable",
    "RemoteError",
    "TransportError",
    "new_event_loop",
    "run",
]
