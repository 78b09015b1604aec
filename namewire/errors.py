"""Every error namewire raises, under one root.

.. code-block:: text

    NamewireError
    ├── ProtocolError            bad bytes from a peer: oversize frame, undecodable body,
    │                            unknown kind, wrong version, missing field
    ├── EncodeError              a value the chosen codec cannot serialise
    ├── TransportError           a socket-level failure; ``address`` names the endpoint
    │   ├── ConnectionRefused    nobody listens at the address
    │   ├── ConnectTimeout       connect did not finish within its timeout
    │   ├── ConnectionReset      the peer reset or closed the connection under us
    │   └── DatagramTooLarge     a datagram over the size limit
    ├── NameNotFound             no live service has that name
    ├── NameTaken                another live process holds the name
    ├── NoSuchFunction           the service does not provide that function
    ├── RemoteError              the remote function raised; carries type, message, traceback
    ├── PeerLost                 the connection to a service broke before it answered
    ├── CallTimeout              no answer within the call's timeout
    ├── RegistryUnavailable      the name service (or etcd) cannot be reached
    ├── AuthError                the peer refused our credentials
    ├── ChannelClosed            get() on a closed and drained channel, put() on a closed one
    └── SupervisorFailed         a supervisor gave up on its children

Messages say what failed, where, and the numbers, e.g.
``frame of 20000000 bytes exceeds limit of 16777216 bytes (from tcp://127.0.0.1:53412)``.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CallTimeout",
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
    "SupervisorFailed",
    "TransportError",
]


class NamewireError(Exception):
    """Root of every namewire error."""


class ProtocolError(NamewireError):
    """A peer sent bytes that break the wire protocol; only that connection is closed."""


class EncodeError(NamewireError, TypeError):
    """A value cannot be serialised by the connection's codec (for example bytes under JSON)."""


class TransportError(NamewireError, ConnectionError):
    """A socket-level failure. ``address`` is the endpoint URL involved, when known."""

    def __init__(self, message: str, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class ConnectionRefused(TransportError):
    """Nothing listens at the address."""


class ConnectTimeout(TransportError, TimeoutError):
    """The connection was not established within the connect timeout."""


class ConnectionReset(TransportError):
    """The peer reset or closed the connection while we were using it."""


class DatagramTooLarge(TransportError, ValueError):
    """A datagram is over the size limit of the socket."""


class NameNotFound(NamewireError, LookupError):
    """No live service is registered under the name."""


class NameTaken(NamewireError):
    """Another live process holds the name; it becomes free when its lease ends."""


class NoSuchFunction(NamewireError, LookupError):
    """The service exists but does not provide the function."""


class RemoteError(NamewireError):
    """The remote function raised.

    ``remote_type`` is the remote exception's qualified type name, ``remote_message`` its message and
    ``remote_traceback`` the formatted traceback text from the remote process.
    """

    def __init__(
        self, message: str, remote_type: str, remote_message: str, remote_traceback: str
    ) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback


class PeerLost(NamewireError):
    """The connection to the service broke before the answer arrived."""


class CallTimeout(NamewireError, TimeoutError):
    """No answer arrived within the call's timeout."""


class RegistryUnavailable(NamewireError):
    """The registry (built-in name service or etcd) cannot be reached."""


class AuthError(NamewireError):
    """The peer refused the credentials given in the handshake."""


class ChannelClosed(NamewireError):
    """The channel is closed: ``put`` after ``close``, or ``get`` once closed and drained."""


class SupervisorFailed(NamewireError):
    """A supervisor gave up: a child failed under ``cancel_siblings``, or restarts ran over the limit.

    ``supervisor`` and ``child`` are names; ``error`` (also ``__cause__``) is the child's exception.
    """

    def __init__(self, message: str, supervisor: str, child: str, error: BaseException) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child = child
        self.error = error
