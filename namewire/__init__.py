"""namewire: distributed Python services that talk to each other by name.

Layout, bottom up (imports only point down): ``runtime/`` (loop entry point, light processes, timers,
channels, async logging and file IO), ``wire/`` (sans-I/O frames, envelopes, codecs, handshake),
``transport/`` (asyncio sockets over the wire layer), ``registry/`` (name service and etcd clients),
``node/`` (`Node`: names, connections, calls, mailbox), ``nameservice/`` (the built-in name service),
and on top ``sync`` (blocking facade), ``workers/`` (`fork`, channels across processes), ``db/``
(asynchronous DB-API access, imported as ``namewire.db``) and ``cli/``. This module only re-exports
the public names.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    AuthError,
    Busy,
    CallTimeout,
    ChannelBroken,
    ChannelClosed,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    DatabaseError,
    DatagramTooLarge,
    EncodeError,
    Forbidden,
    FrameTooLarge,
    HandshakeTimeout,
    MessageTooLarge,
    NameNotFound,
    NameTaken,
    NamewireError,
    NoSuchFunction,
    PeerLost,
    ProtocolError,
    RegistryUnavailable,
    RemoteError,
    TransportError,
    ValueCannotCross,
    WorkerExited,
)
from .node import Caller, Node, current_traceparent, trace_context
from .runtime import (
    Channel,
    LogPipeline,
    Policy,
    Process,
    Supervisor,
    SupervisorFailed,
    Ticker,
    Timer,
    call_later,
    configure_logging,
    every,
    fs,
    new_event_loop,
    run,
    select,
    set_default_node_name,
    set_node_name,
    sleep,
    sleep_until,
    spawn,
    stop_processes,
)
from .transport import (
    DatagramSocket,
    Listener,
    Security,
    StreamSocket,
    TlsConfig,
    bind,
    connect,
    listen,
)

if TYPE_CHECKING:
    from .workers import Worker, WorkerChannel, fork, run_worker

# Imported on first use: multiprocessing and ctypes are not needed by a program that starts no
# worker, and every `namewire` command would pay for them at start-up.
_LAZY = {"Worker", "WorkerChannel", "fork", "run_worker"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import workers

        return getattr(workers, name)
    raise AttributeError(f"module 'namewire' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "Busy",
    "CallTimeout",
    "Caller",
    "Channel",
    "ChannelBroken",
    "ChannelClosed",
    "ConnectTimeout",
    "ConnectionRefused",
    "ConnectionReset",
    "DatabaseError",
    "DatagramSocket",
    "DatagramTooLarge",
    "EncodeError",
    "Forbidden",
    "FrameTooLarge",
    "HandshakeTimeout",
    "Listener",
    "LogPipeline",
    "MessageTooLarge",
    "NameNotFound",
    "NameTaken",
    "NamewireError",
    "NoSuchFunction",
    "Node",
    "PeerLost",
    "Policy",
    "Process",
    "ProtocolError",
    "RegistryUnavailable",
    "RemoteError",
    "Security",
    "StreamSocket",
    "Supervisor",
    "SupervisorFailed",
    "Ticker",
    "Timer",
    "TlsConfig",
    "TransportError",
    "ValueCannotCross",
    "Worker",
    "WorkerChannel",
    "WorkerExited",
    "bind",
    "call_later",
    "configure_logging",
    "connect",
    "current_traceparent",
    "every",
    "fork",
    "fs",
    "listen",
    "new_event_loop",
    "run",
    "run_worker",
    "select",
    "set_default_node_name",
    "set_node_name",
    "sleep",
    "sleep_until",
    "spawn",
    "stop_processes",
    "trace_context",
]
