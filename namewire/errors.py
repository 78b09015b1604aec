"""Every error namewire raises, under one root.

.. code-block:: text

    NamewireError
    ├── ProtocolError            bad bytes from a peer: undecodable body, unknown kind, wrong
    │   │                        version, missing field; ``origin`` names the peer's address
    │   ├── FrameTooLarge        a frame over the size limit (``size``, ``limit``)
    │   └── HandshakeTimeout     no complete handshake within its deadline (``timeout``)
    ├── EncodeError              a value the chosen codec cannot serialise
    │   └── MessageTooLarge      an outgoing call, reply or message over the peer's frame limit
    ├── TransportError           a socket-level failure; ``address`` names the endpoint
    │   ├── ConnectionRefused    nobody listens at the address
    │   ├── ConnectTimeout       connect did not finish within its timeout
    │   ├── ConnectionReset      the peer reset or closed the connection under us
    │   └── DatagramTooLarge     a datagram over the size limit
    ├── NameNotFound             no live service has that name
    ├── NameTaken                another live process holds the name
    ├── NoSuchFunction           the service does not provide that function
    ├── Busy                     the service runs as many calls as its limits allow; nothing ran
    ├── Forbidden                the policy file does not let this identity register that name
    │                            or call that function; nothing ran
    ├── RemoteError              the remote function raised; carries type, message, traceback
    ├── PeerLost                 the connection to a service broke before it answered
    ├── CallTimeout              no answer within the call's timeout or inherited deadline
    ├── RegistryUnavailable      the name service (or etcd) cannot be reached
    ├── AuthError                authentication failed (wrong or missing secret or certificate)
    ├── ChannelClosed            get() on a closed and drained channel, put() on a closed one
    ├── DatabaseError            a namewire.db operation failed: the driver's error and the statement
    ├── ChannelBroken            the other end of a worker channel went away without closing it
    │   └── WorkerExited         ... because the worker ended: ``exitcode`` or ``signal``
    ├── ValueCannotCross         (also an EncodeError) a value a worker channel cannot carry
    └── SupervisorFailed         a supervisor gave up on its children

Messages say what failed, where, and the numbers, e.g.
``frame of 20000000 bytes exceeds limit of 16777216 bytes (from tcp://127.0.0.1:53412)``. The facts
in a message are attributes of the exception too (``peer``, ``function``, ``timeout``, ``size``,
``limit``, ``address`` ...), and ``str()`` builds the text from them, so a handler can branch on
``exc.peer`` instead of parsing the text.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuthError",
    "Busy",
    "CallTimeout",
    "ChannelBroken",
    "ChannelClosed",
    "ConnectTimeout",
    "ConnectionRefused",
    "ConnectionReset",
    "DatabaseError",
    "DatagramTooLarge",
    "EncodeError",
    "Forbidden",
    "FrameTooLarge",
    "HandshakeTimeout",
    "MessageTooLarge",
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
    "ValueCannotCross",
    "WorkerExited",
]


class NamewireError(Exception):
    """Root of every namewire error."""


def call_site(operation: str, peer: str | None, function: str | None = None) -> str:
    """How messages name an operation: ``rpc_call('PlusServer', 'plus')``, ``send_msg('Log')``."""
    if function is None:
        return f"{operation}({peer!r})"
    if peer is None:
        return f"{operation}({function!r})"
    return f"{operation}({peer!r}, {function!r})"


class ProtocolError(NamewireError):
    """A peer sent bytes that break the wire protocol; only that connection is closed.

    ``origin`` is the peer's address when known (already part of the message).
    """

    def __init__(self, message: str, *, origin: str | None = None) -> None:
        super().__init__(message)
        self.origin = origin


class FrameTooLarge(ProtocolError):
    """A frame announced ``size`` bytes, over the ``limit`` of the receiving side."""

    def __init__(self, size: int, limit: int, origin: str | None = None) -> None:
        self.size = size
        self.limit = limit
        where = f" (from {origin})" if origin else ""
        super().__init__(f"frame of {size} bytes exceeds limit of {limit} bytes{where}",
                         origin=origin)


class HandshakeTimeout(ProtocolError):
    """A connection did not complete its handshake (hello, and proof of the secret where one is
    required) within ``timeout`` seconds; only that connection is closed."""

    def __init__(self, timeout: float, origin: str | None = None) -> None:
        self.timeout = timeout
        where = f" from {origin}" if origin else ""
        super().__init__(f"no complete handshake{where} within {timeout:g}s", origin=origin)


class EncodeError(NamewireError, TypeError):
    """A value cannot be serialised by the connection's codec (for example bytes under JSON)."""


class MessageTooLarge(EncodeError, ValueError):
    """An outgoing frame of ``size`` bytes is over the peer's frame ``limit`` (from its hello).

    Only that call, reply or message fails; the connection and the other calls on it carry on.
    ``what`` says what was being sent (``rpc_call('P', 'f')``, ``reply to 'P'``...).
    """

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what = what
        self.size = size
        self.limit = limit
        super().__init__(f"{what}: frame of {size} bytes exceeds the peer's limit of {limit} bytes")


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
    """No live service is registered under ``name``.

    ``reason`` replaces the default text when the name is known but unusable; ``registry`` is the
    registry's address when one was asked.
    """

    def __init__(
        self, name: str, reason: str | None = None, *, registry: str | None = None
    ) -> None:
        self.name = name
        self.reason = reason
        self.registry = registry
        super().__init__(name)

    def __str__(self) -> str:
        text = self.reason or f"no service named {self.name!r}"
        return f"{text} (name service {self.registry})" if self.registry else text


class NameTaken(NamewireError):
    """A live service holds ``name``: it becomes free when that service stops (or its lease is not
    renewed). ``addresses``, ``host`` and ``pid`` describe the holder where known; ``reason``
    replaces the text when the registry gave no details.
    """

    def __init__(
        self,
        name: str,
        *,
        addresses: Sequence[str] = (),
        host: str = "",
        pid: int = 0,
        reason: str | None = None,
    ) -> None:
        self.name = name
        self.addresses = tuple(addresses)
        self.host = host
        self.pid = pid
        self.reason = reason
        super().__init__(name)

    def __str__(self) -> str:
        if self.reason is not None and not (self.addresses or self.host or self.pid):
            return self.reason
        where = f" at {', '.join(self.addresses)}" if self.addresses else ""
        facts = [f"host {self.host}"] if self.host else []
        facts += [f"pid {self.pid}"] if self.pid else []
        about = f" ({', '.join(facts)})" if facts else ""
        return (f"name {self.name!r} is held by a live service{where}{about}; stop that one, or "
                "give this one another name (`namewire run --name`, `Node(name)`)")


class NoSuchFunction(NamewireError, LookupError):
    """``peer`` does not provide ``function``; ``provided`` lists what it does, when known.

    ``peer`` None: nobody provides it (`Node.rpc_call_any`).
    """

    def __init__(
        self,
        peer: str | None,
        function: str,
        provided: Sequence[str] | None = None,
        *,
        operation: str = "rpc_call",
    ) -> None:
        self.peer = peer
        self.function = function
        self.provided = tuple(provided) if provided is not None else None
        self.operation = operation
        super().__init__(peer, function)

    def __str__(self) -> str:
        where = call_site(self.operation, self.peer, self.function)
        if self.peer is None:
            return f"{where}: no live service provides it"
        text = f"{where}: {self.peer!r} has no function {self.function!r}"
        if self.provided is not None:
            text += f" (it provides: {', '.join(self.provided) or 'none'})"
        return text


class Busy(NamewireError):
    """``peer`` refused to start ``function``: it runs as many calls as its limit allows
    (``reason`` names the limit). Answered at once; nothing ran. Try again later or elsewhere."""

    def __init__(self, peer: str | None, function: str, reason: str) -> None:
        self.peer = peer
        self.function = function
        self.reason = reason
        super().__init__(peer, function, reason)

    def __str__(self) -> str:
        return f"{call_site('rpc_call', self.peer, self.function)}: busy ({self.reason})"


class Forbidden(NamewireError):
    """The policy file (docs/security.md) does not allow it: ``reason`` says who may not register
    which name or call which function. Refused before anything ran or was stored."""

    def __init__(self, reason: str, *, peer: str | None = None, function: str | None = None) -> None:
        self.reason = reason
        self.peer = peer
        self.function = function
        super().__init__(reason)

    def __str__(self) -> str:
        if self.function is None:
            return f"forbidden: {self.reason}"
        return f"{call_site('rpc_call', self.peer, self.function)}: forbidden ({self.reason})"


class RemoteError(NamewireError):
    """``function`` raised in ``peer``.

    ``remote_type`` is the remote exception's qualified type name, ``remote_message`` its message and
    ``remote_traceback`` the formatted traceback text from the remote process.
    """

    def __init__(
        self,
        peer: str | None,
        function: str,
        remote_type: str,
        remote_message: str,
        remote_traceback: str = "",
    ) -> None:
        self.peer = peer
        self.function = function
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        super().__init__(peer, function, remote_type, remote_message)

    def __str__(self) -> str:
        where = call_site("rpc_call", self.peer, self.function)
        return f"{where}: {self.remote_type}: {self.remote_message}"


class PeerLost(NamewireError):
    """The connection to ``peer`` broke (or could not be made) before the answer arrived.

    ``reason`` says how (``connection reset by tcp://127.0.0.1:7001``, ``no answer to ping within
    3.0s``); ``function`` is set for a call, ``operation`` names what was being done
    (``rpc_call``, ``send_msg``, ``connect``...); ``address`` is the peer's address when known.
    """

    def __init__(
        self,
        peer: str | None,
        reason: str,
        *,
        function: str | None = None,
        operation: str = "rpc_call",
        address: str | None = None,
    ) -> None:
        self.peer = peer
        self.reason = reason
        self.function = function
        self.operation = operation
        self.address = address
        super().__init__(peer, reason)

    def __str__(self) -> str:
        if self.operation == "connect":
            return f"cannot reach {self.peer!r}: {self.reason}"
        if self.function is None and self.operation == "rpc_call":
            return f"peer {self.peer or self.address!r} lost ({self.reason})"
        return f"{call_site(self.operation, self.peer, self.function)}: peer lost ({self.reason})"


class CallTimeout(NamewireError, TimeoutError):
    """No answer from ``peer`` to ``function`` within ``timeout`` seconds.

    ``inherited`` is True when the limit was the deadline inherited from the call being served
    (a nested call), not a timeout of its own; ``timeout`` is then the budget that was left.
    """

    def __init__(
        self, peer: str | None, function: str, timeout: float, *, inherited: bool = False
    ) -> None:
        self.peer = peer
        self.function = function
        self.timeout = timeout
        self.inherited = inherited
        super().__init__(peer, function, timeout)

    def __str__(self) -> str:
        where = call_site("rpc_call", self.peer, self.function)
        if self.inherited and self.timeout <= 0:
            return f"{where}: not sent, the deadline inherited from the call being served has passed"
        budget = f"{self.timeout:.3g}s"
        if self.inherited:
            return f"{where}: no answer within the {budget} left of the inherited deadline"
        return f"{where}: no answer within {budget}"


class RegistryUnavailable(NamewireError):
    """The registry (built-in name service or etcd) cannot be reached."""


class AuthError(NamewireError):
    """Authentication failed in the handshake, either way: the peer's credentials were wrong or
    missing, or it refused ours. ``reason`` says which; ``peer`` (hello name) and ``address`` name
    the other side when known. Only that connection is closed.
    """

    def __init__(self, reason: str, *, peer: str | None = None, address: str | None = None) -> None:
        self.reason = reason
        self.peer = peer
        self.address = address
        super().__init__(reason)

    def __str__(self) -> str:
        if self.peer and self.address:
            who = f"{self.peer!r} ({self.address})"
        else:
            who = repr(self.peer) if self.peer else self.address or ""
        return f"authentication failed with {who}: {self.reason}" if who else self.reason


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


class DatabaseError(NamewireError):
    """A `namewire.db` operation failed.

    ``operation`` is what was being done (``execute``, ``fetch_all``, ``commit``, ``connect``...),
    ``database`` the database's label (a SQLite path, or the driver's name), ``statement`` the SQL
    when there was one (the parameters are left out: they may hold secrets). ``driver_error`` (also
    ``__cause__``) is the driver's exception when the driver raised; ``driver_type`` is its qualified
    type name (``sqlite3.IntegrityError``, ``psycopg.errors.UniqueViolation``), ``driver_message``
    its text and ``driver_code`` its SQLSTATE or SQLite error name when the driver gives one.
    ``reason`` is the text when namewire itself refused (``the database is closed``).
    """

    def __init__(
        self,
        operation: str,
        database: str,
        *,
        statement: str | None = None,
        driver_error: BaseException | None = None,
        reason: str | None = None,
    ) -> None:
        self.operation = operation
        self.database = database
        self.statement = statement
        self.driver_error = driver_error
        self.reason = reason
        if driver_error is not None:
            kind = type(driver_error)
            self.driver_type: str | None = f"{kind.__module__.lstrip('_')}.{kind.__qualname__}"
            self.driver_message: str | None = str(driver_error).strip()
            code = getattr(driver_error, "sqlstate", None) or getattr(
                driver_error, "sqlite_errorname", None
            )
            self.driver_code: str | None = code if isinstance(code, str) else None
        else:
            self.driver_type = self.driver_message = self.driver_code = None
        super().__init__(operation, database, statement)

    def __str__(self) -> str:
        if self.driver_error is not None:
            text = f"{self.driver_type}: {self.driver_message}"
        else:
            text = self.reason or "failed"
        where = f"{self.operation} on {self.database}: {text}"
        if self.statement is None:
            return where
        statement = " ".join(self.statement.split())
        if len(statement) > 200:
            statement = statement[:197] + "..."
        return f"{where} (statement: {statement})"


class ChannelBroken(NamewireError):
    """The other end of the worker channel ``channel`` went away without closing it (``why``).

    Values it had sent before are still readable; after them, and for every ``put``, this is raised.
    """

    def __init__(self, channel: str, why: str) -> None:
        self.channel = channel
        self.why = why
        super().__init__(channel, why)

    def __str__(self) -> str:
        return f"channel {self.channel!r}: {self.why}" if self.channel else self.why


class WorkerExited(ChannelBroken):
    """The worker ``worker`` (``pid``; None for a thread) ended while its channels were open.

    ``exitcode`` is the process's exit status (None if a signal ended it), ``signal`` the name of
    the signal that killed it (``"SIGKILL"``) or None, ``error`` the text of the exception a thread
    worker (or a worker that could not start) ended with.
    """

    def __init__(
        self,
        channel: str,
        worker: str,
        pid: int | None,
        exitcode: int | None,
        signal: str | None = None,
        error: str | None = None,
    ) -> None:
        self.worker = worker
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal
        self.error = error
        who = f"worker {worker!r}" + (f" (pid {pid})" if pid is not None else " (thread)")
        if signal is not None:
            how = f"was killed by {signal}"
        else:
            how = f"exited with code {exitcode}"
        if error:
            how += f" ({error})"
        super().__init__(channel, f"{who} {how}")


class ValueCannotCross(EncodeError):
    """A value put on the worker channel ``channel`` cannot be encoded to cross to the other side.

    ``type_name`` is the type that msgpack cannot carry, ``path`` where it sits in the value
    (``"[2]['when']"``, empty for the value itself). Nothing was sent; the channel stays usable.
    """

    def __init__(self, channel: str, type_name: str, path: str = "") -> None:
        self.channel = channel
        self.type_name = type_name
        self.path = path
        super().__init__(channel, type_name, path)

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return (
            f"channel {self.channel!r}: a value of type {self.type_name}{where} cannot cross to "
            "another process (msgpack carries None, bool, int, float, str, bytes, list, tuple "
            "and dict); nothing was sent"
        )
