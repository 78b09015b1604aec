"""`Node`: one named service. Registers itself, resolves others, and hides every connection."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import itertools
import logging
import os
import random
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from functools import partial
from time import perf_counter
from types import CoroutineType
from typing import Any, Literal, NamedTuple, TypeVar, overload

from ..errors import (
    CallTimeout,
    EncodeError,
    NameNotFound,
    NamewireError,
    NoSuchFunction,
    PeerLost,
    RegistryUnavailable,
    RemoteError,
    TransportError,
)
from ..registry import (
    DEFAULT_LEASE_TTL,
    Registration,
    Registry,
    default_nameservice,
    host_id,
    open_registry,
)
from ..runtime import stop_waiting
from ..runtime._metrics import SAMPLE_MASK, CallStats, Metrics, outcome_of
from ..transport import Policy, Security, Session, parse_address, scheme_of
from ..wire import (
    DEFAULT_MAX_FRAME,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WINDOW,
    ERROR_BUSY,
    ERROR_FORBIDDEN,
    ERROR_NO_SUCH_FUNCTION,
    ERROR_REMOTE,
    Call,
    codec_named,
    from_wire,
)
from ._failures import FailureLog
from ._functions import Caller, FunctionTable
from ._groups import GroupRouter
from ._listeners import Listeners
from ._mailbox import Mailbox
from ._routes import RouteTable, carried_message
from ._stalls import watch_stalled_frames
from ._startup import DEFAULT_REGISTRY_WAIT, start_registry, wait_for_calls
from ._tracing import (
    attach_span,
    end_span,
    opentelemetry_tracer,
    start_client_span,
    start_server_span,
    traceparent_of,
)

__all__ = ["DEFAULT", "DEFAULT_CALL_TIMEOUT", "STATS_FUNCTION", "Node"]

log = logging.getLogger("namewire.node")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_CALL_TIMEOUT = 30.0
_UNSENDABLE = "returned a result that cannot be sent (the caller got an error):"
DEFAULT_LISTEN = "tcp://127.0.0.1:0"
# The remote function every node answers (not listed in its registration): `Node.stats`.
STATS_FUNCTION = "namewire.stats"


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()
"""The ``timeout`` of `Node.rpc_call` that means "the node's ``call_timeout``" (None: no limit)."""


class Serving(NamedTuple):
    """The call being served in this context: its deadline (loop time, None: none), request id
    and W3C traceparent.

    Calls made while serving inherit all three, so a chain of nested calls cannot outlive the first
    caller's timeout, and every call made for one request carries its id and its trace.
    """

    deadline: float | None
    request: int | None
    trace: str | None = None


serving: contextvars.ContextVar[Serving | None] = contextvars.ContextVar(
    "namewire.serving", default=None
)
# Request ids of calls that start a request (made outside any call being served).
_request_ids = itertools.count(random.randrange(1 << 24) << 8)


def new_request_id() -> int:
    return next(_request_ids)


class Node:
    """A named service: provides remote functions and reaches other services by name.

    Register functions with `function` (sync ``def`` runs inline on the loop, ``async def`` gets a
    task per call), then ``async with node.serve(...)``. Inside, the seed's four functions work by
    name alone: `send_msg`, `rpc_call`, `get_remote_func_provider`, `get_msg`; plus `rpc_call_any`.

    ``call_timeout`` is the default timeout of `rpc_call` (None: wait forever). ``mailbox_size`` and
    ``mailbox_bytes`` bound what each sender may have unread in `get_msg`'s mailbox (its `send_msg`
    waits beyond them; its calls go on). ``ping_interval``/``ping_timeout``: a peer we wait on that
    is silent for ``ping_interval`` seconds is pinged, and lost (its calls fail with `PeerLost`) if
    nothing comes back within ``ping_timeout`` more; None turns pings off. ``codec`` is what this
    node speaks on connections it opens ("msgpack" or "json"; accepted connections answer in the
    caller's codec). ``failures`` (a `FailureLog`) logs the remote functions that fail, in the
    service, rate-limited. ``metrics``: True counts calls, bytes, connections... (`stats`, and
    the ``namewire.stats`` function every node answers); a ``tcp://host:port`` URL also serves
    them there in the Prometheus text format (docs/observability.md); False counts nothing.
    ``security`` (default: `Security.from_env`) holds TLS, the shared secret, the handshake's
    limits and the policy file checked on every call received (docs/security.md).
    """

    def __init__(
        self,
        name: str,
        *,
        call_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        connect_timeout: float = 5.0,
        mailbox_size: int = DEFAULT_WINDOW[0],
        mailbox_bytes: int = DEFAULT_WINDOW[1],
        codec: str = "msgpack",
        max_frame: int = DEFAULT_MAX_FRAME,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        metrics: bool | str = True,
        security: Security | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"a node needs a non-empty name, not {name!r}")
        self.name = name
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self.codec = codec
        self.max_frame = max_frame
        self.functions = FunctionTable()
        self.failures = FailureLog()
        if mailbox_size <= 0 or mailbox_bytes <= 0:
            raise ValueError(
                f"mailbox_size and mailbox_bytes must be positive, not {mailbox_size}, "
                f"{mailbox_bytes}"
            )
        self._mailbox_size = mailbox_size
        self._window = (mailbox_size, mailbox_bytes)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.security = security if security is not None else Security.from_env()
        self._mailbox: Mailbox | None = None
        self._routes = RouteTable(self)
        self._registry: Registry | None = None
        self._listeners: Listeners | None = None
        self._round_robin: dict[str, int] = {}
        self._running = False
        self._stopping = False
        self._teardown: asyncio.Task[None] | None = None
        self._advertise: tuple[str, ...] = ()
        self._stalls: asyncio.Task[None] | None = None
        self._running_calls = 0  # async calls from peers running now, on every connection
        self._busy = False  # refusing calls as Busy; logged once per episode
        self._not_holding: str | None = None  # why we may not answer under our name now
        # The functions a connection may answer without the node (`_refresh_direct`): one dict,
        # shared by every session that can, and changed in place.
        self._direct: dict[str, Callable[..., Any]] = {}
        self.metrics: Metrics | None = Metrics(name) if metrics else None
        self.metrics_url = metrics if isinstance(metrics, str) else None
        self._metrics_endpoint: Any = None
        self._tracer: Any = None  # an OpenTelemetry tracer, when an SDK is set up
        if self.metrics is not None:
            self.metrics.readers.append(self._live_counters)
        self._metadata: dict[str, Any] = {}
        self._reregistering: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The group this node is an instance of (`namewire run --workers N` sets it), and the
        # routing of calls and messages to group names (`_groups.py`).
        self.group = ""
        self._groups = GroupRouter(self)

    # -- remote functions ------------------------------------------------------------------------

    @overload
    def function(self, fn: F, /) -> F: ...

    @overload
    def function(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        idempotent: bool = False,
        with_caller: bool = False,
    ) -> Callable[[F], F]: ...

    def function(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        idempotent: bool = False,
        with_caller: bool = False,
    ) -> F | Callable[[F], F]:
        """Register a remote function: ``@node.function`` or ``@node.function(name=..., ...)``.

        ``idempotent=True`` lets `rpc_call_any` retry the call on another provider when the chosen
        one is lost before answering. ``with_caller=True`` passes a `Caller` (the calling node's name
        and session) as the first argument. A function added while the node is serving is callable
        at once, and the node registers again so that ``namewire ls`` and
        `get_remote_func_provider` list it too (one registration for the functions added in one
        loop turn).
        """

        def add(f: F) -> F:
            self.functions.add(f, name=name, idempotent=idempotent, with_caller=with_caller)
            self._refresh_direct()
            self._functions_changed()
            return f

        return add(fn) if fn is not None else add

    # -- lifecycle -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def serve(
        self,
        *,
        listen: str | Sequence[str] | None = DEFAULT_LISTEN,
        unix: bool = True,
        advertise: str | Sequence[str] | None = None,
        nameservice: str | None = None,
        registry: Registry | None = None,
        standalone: bool = False,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        metadata: dict[str, Any] | None = None,
        grace: float = 5.0,
        registry_wait: float = DEFAULT_REGISTRY_WAIT,
    ) -> AsyncIterator[Node]:
        """Start the node for the duration of the block; see `start` and `stop`."""
        await self.start(
            listen=listen,
            unix=unix,
            advertise=advertise,
            nameservice=nameservice,
            registry=registry,
            standalone=standalone,
            lease_ttl=lease_ttl,
            metadata=metadata,
            registry_wait=registry_wait,
        )
        try:
            yield self
        finally:
            await self.stop(grace=grace)

    async def start(
        self,
        *,
        listen: str | Sequence[str] | None = DEFAULT_LISTEN,
        unix: bool = True,
        advertise: str | Sequence[str] | None = None,
        nameservice: str | None = None,
        registry: Registry | None = None,
        standalone: bool = False,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        metadata: dict[str, Any] | None = None,
        registry_wait: float = DEFAULT_REGISTRY_WAIT,
    ) -> None:
        """Listen, connect to the registry and register.

        ``listen``: address URL(s) to accept connections on (port 0 picks one); None for a node that
        only calls out; a wildcard host (``tcp://0.0.0.0:N``) is advertised under an address of this
        host that others can reach. ``unix`` adds a unix socket, which same-host peers prefer.
        ``advertise``: the URL(s) peers are told to use instead of the ``listen`` addresses (NAT,
        containers, a proxy in front); the unix socket is still advertised. ``nameservice``:
        the name service URL (None: ``$NAMEWIRE_NAMESERVICE``, else tcp://127.0.0.1:8010).
        ``registry`` plugs in another `Registry` backend instead. ``standalone=True`` uses no
        registry at all: only peers that connected to this node can be reached.
        ``registry_wait``: while the registry cannot be reached, keep trying (with backoff, logged)
        for this many seconds; 0 tries once. Raises `RegistryUnavailable` (saying how long it
        tried), `NameTaken`, `TransportError` (cannot listen); on failure nothing is left running.
        """
        if self._running:
            raise RuntimeError(f"node {self.name!r} is already running")
        advertised = _advertise_urls(advertise)
        if advertised and listen is None:
            raise ValueError("advertise= names where peers reach the listen= sockets; give listen= too")
        self._advertise = advertised
        self._running = True
        self._stopping = False
        self._not_holding = None
        self._loop = asyncio.get_running_loop()
        self._mailbox = Mailbox(self._mailbox_size)
        self._stalls = asyncio.get_running_loop().create_task(watch_stalled_frames(
            lambda: self._routes.sessions, self.security.frame_timeout, self.name))
        self._tracer = opentelemetry_tracer()
        self._refresh_direct()
        try:
            if self.metrics is not None:
                self.metrics.service = self.name
                if self.metrics_url is not None:
                    from ._prometheus import MetricsEndpoint  # prometheus_client only when asked

                    self._metrics_endpoint = await MetricsEndpoint.open(
                        self.metrics_url, self.metrics
                    )
            if listen is not None:
                urls = [listen] if isinstance(listen, str) else list(listen)
                self.security.check_listen(urls)
                self._listeners = await Listeners.open(self, urls, unix=unix)
            if registry is None and not standalone:
                registry = open_registry(
                    nameservice or default_nameservice(),
                    node_name=self.name,
                    ttl=lease_ttl,
                    security=self.security,
                )
            if registry is not None:
                registry.name_left = self._routes.retire
                registry.name_changed = self._routes.changed
                registry.holding_changed = self._holding_changed
                registry.metrics = self.metrics
                await start_registry(registry, registry_wait, self.name)
                self._registry = registry
                self._metadata = metadata or {}
                if self._listeners is not None:
                    await registry.register(self._registration(self._metadata))
        except BaseException:
            await self.stop(grace=0)
            raise

    async def stop(self, grace: float = 5.0) -> None:
        """Leave cleanly: deregister, stop accepting, let running calls finish within ``grace``
        seconds, then close every connection (calls still waiting on them get `PeerLost`).

        The teardown runs in a task of its own: cancelling ``stop`` cancels only the wait for it,
        and the node still closes everything. A ``stop`` while one is under way waits for that
        same teardown (its ``grace`` is the first one's); on a stopped node it returns at once.
        Under `namewire.run`, a second SIGINT/SIGTERM ends the grace period at once.
        """
        if not self._running:
            return
        teardown = self._teardown
        if teardown is None:
            teardown = asyncio.get_running_loop().create_task(
                self._stop(grace), name=f"namewire.stop({self.name})"
            )
            self._teardown = teardown
            teardown.add_done_callback(self._stopped)
        await asyncio.shield(teardown)

    async def _stop(self, grace: float) -> None:
        self._stopping = True
        registry, self._registry = self._registry, None
        listeners = self._listeners
        try:
            if registry is not None:
                await registry.deregister()
            if listeners is not None:
                await listeners.close()
            running = self._routes.running_calls()
            if running and grace > 0:
                await wait_for_calls(self.name, running, grace, stop_waiting())
        finally:
            # Even when the steps above fail (or the loop's shutdown cancels this task), close what
            # is open: connections, the registry session, the listeners' socket files.
            stalls, self._stalls = self._stalls, None
            if stalls is not None:
                stalls.cancel()
            try:
                await self._routes.close_all()
            finally:
                try:
                    if registry is not None:
                        await registry.close()
                finally:
                    if listeners is not None:
                        await listeners.close()
                        listeners.remove_files()
                    self._listeners = None
                    endpoint, self._metrics_endpoint = self._metrics_endpoint, None
                    if endpoint is not None:
                        await endpoint.close()
                    self._running = False

    def _stopped(self, teardown: asyncio.Task[None]) -> None:
        self._teardown = None
        if not teardown.cancelled() and teardown.exception() is not None:
            # Retrieved here too: every stop() awaiting it may have been cancelled.
            log.error("node %r: stopping failed", self.name, exc_info=teardown.exception())

    @property
    def addresses(self) -> tuple[str, ...]:
        """The URLs peers reach this node at, as registered (empty when it does not listen).

        The ``listen`` addresses (a wildcard host replaced by a reachable one), or the ``advertise``
        URLs given to `start`, followed by the unix socket if there is one.
        """
        if self._listeners is None:
            return ()
        if not self._advertise:
            return self._listeners.addresses
        local = tuple(a for a in self._listeners.addresses if scheme_of(a).same_host)
        return self._advertise + local

    @property
    def peers(self) -> list[tuple[str, str]]:
        """Open connections as ``(peer name, address)``, one row per connection."""
        return self._routes.peers

    @property
    def registry(self) -> Registry | None:
        return self._registry

    # -- the four functions, and friends ---------------------------------------------------------

    def send_msg(self, name: str, msg: Any) -> Coroutine[Any, Any, None]:
        """Send ``msg`` to service ``name``; await it. Ordered per sender -> receiver.

        Delivered at most once: returns when the message is handed to the connection (waiting only
        while the connection's write buffer is full); if the connection dies before the peer reads
        it, it is lost without a word. Use `rpc_call` when you need to know. Raises `NameNotFound`,
        `PeerLost` (cannot reach, or the connection is already closed), `EncodeError`. A node may
        send to its own name.
        """
        session = self._routes.by_name.get(name) or self._groups.open_member(name, sticky=True)
        if session is None:
            return self._send_msg_first(name, msg)
        return session.send_msg(msg)  # one coroutine per message, as in `rpc_call`

    async def _send_msg_first(self, name: str, msg: Any) -> None:
        """`send_msg` without an open route: to ourselves, or after look-up and connect."""
        if name == self.name:
            await self._own_mailbox().put_waiting(self.name, self._through_codec(msg))
            return
        routes = self._routes
        session = routes.carrier_route(name) or await self._route_or_group(name, sticky=True)
        if session.peer_name != name and name in routes.carried:
            msg = carried_message(name, msg)  # its carrier (a gateway) delivers it
        await session.send_msg(msg)

    def rpc_call(
        self, name: str, func: str, *args: Any, timeout: float | None = DEFAULT
    ) -> Coroutine[Any, Any, Any]:
        """Call ``func(*args)`` on service ``name``; await it for the result.

        Arguments are positional only: a call carries no keyword arguments to the remote function
        (``timeout`` is this method's own keyword), so give a function that needs options a dict.

        Raises `NameNotFound`, `NoSuchFunction`, `RemoteError`, `PeerLost` (cannot reach, or lost
        before answering), `CallTimeout`, `EncodeError`. ``timeout`` defaults to the node's
        ``call_timeout``. Cancelling the awaiting task cancels the remote call too.
        """
        # A plain function handing back the session's coroutine: with an open route, a call costs
        # one coroutine instead of two (about a tenth of a small call's CPU on the caller's side).
        if timeout is DEFAULT:
            timeout = self.call_timeout
        context = serving.get()
        if self._tracer is not None:
            return self._rpc_call_traced(name, func, args, timeout, context)
        session = self._routes.by_name.get(name) or self._groups.open_member(name, sticky=False)
        if session is None:
            return self._rpc_call_first(name, func, args, timeout, context)
        if context is None:
            return session.call(func, args, timeout, None, next(_request_ids))
        return session.call(func, args, timeout, context.deadline, context.request, context.trace)

    async def _rpc_call_traced(
        self,
        name: str,
        func: str,
        args: tuple[Any, ...],
        timeout: float | None,
        context: Serving | None,
    ) -> Any:
        """`rpc_call` inside an OpenTelemetry CLIENT span, whose traceparent the call carries."""
        span = start_client_span(self._tracer, name, func, context.trace if context else None)
        if context is None:
            context = Serving(None, next(_request_ids))
        context = context._replace(trace=traceparent_of(span))
        try:
            session = self._routes.by_name.get(name) or self._groups.open_member(name, sticky=False)
            if session is None:
                result = await self._rpc_call_first(name, func, args, timeout, context)
            else:
                result = await session.call(
                    func, args, timeout, context.deadline, context.request, context.trace
                )
        except BaseException as exc:
            end_span(span, exc)
            raise
        end_span(span, None)
        return result

    async def _rpc_call_first(
        self,
        name: str,
        func: str,
        args: tuple[Any, ...],
        timeout: float | None,
        context: Serving | None,
    ) -> Any:
        """`rpc_call` without an open route: to ourselves, or after look-up and connect."""
        if name == self.name:
            return await self._call_self(func, args, timeout, context)
        session = await self._route_or_group(name, sticky=False)
        if session.peer_name != name and name in self._routes.carried:
            raise NoSuchFunction(name, func, (), operation="rpc_call")  # it takes messages only
        if context is None:
            return await session.call(func, args, timeout, None, next(_request_ids))
        return await session.call(
            func, args, timeout, context.deadline, context.request, context.trace
        )

    async def rpc_call_any(
        self,
        func: str,
        *args: Any,
        timeout: float | None = DEFAULT,
        strategy: Literal["round_robin", "least_pending"] = "round_robin",
    ) -> Any:
        """Call ``func`` on any live provider other than this node.

        ``round_robin`` rotates through the providers; ``least_pending`` picks the one with fewest
        calls of ours waiting. When the chosen provider is lost before answering, the call moves on to
        another provider only if the function was registered as idempotent; otherwise `PeerLost`.
        Raises `NoSuchFunction` when nobody provides ``func``.
        """
        tried: set[str] = set()
        while True:
            providers = [p for p in await self.get_remote_func_provider(func) if p not in tried]
            if not providers:
                if tried:
                    raise PeerLost(
                        None,
                        f"every provider was lost: {', '.join(sorted(tried))}",
                        function=func,
                        operation="rpc_call_any",
                    )
                raise NoSuchFunction(None, func, operation="rpc_call_any")
            target = self._choose(func, providers, strategy)
            registry = self._registry
            idempotent = registry is not None and func in (await registry.lookup(target)).idempotent
            try:
                return await self.rpc_call(target, func, *args, timeout=timeout)
            except (PeerLost, TransportError):
                if not idempotent:
                    raise
                tried.add(target)
                log.info("rpc_call_any(%r): %r lost, retrying elsewhere", func, target)

    async def get_remote_func_provider(self, func: str) -> list[str]:
        """Names of all live services providing ``func``, except this node (sorted)."""
        registry = self._registry
        if registry is None:
            if not self._running:
                raise RuntimeError(f"get_remote_func_provider({func!r}): node {self.name!r} is not running")
            raise RegistryUnavailable(
                f"get_remote_func_provider({func!r}): node {self.name!r} runs without a registry"
            )
        return [p for p in await registry.providers(func) if p != self.name]

    async def get_msg(self) -> tuple[str, Any]:
        """The next ordinary message, as ``(sender_name, msg)``; waits for one."""
        return await self._own_mailbox().get()

    # -- SessionHandler --------------------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        log.debug("%s: connection with %r open (%s)", self.name, session.peer_name, session.origin)
        self._routes.opened(session)
        metrics = self.metrics
        if metrics is not None:
            metrics.connections_opened += 1
        session.serve_directly(
            self._direct,
            partial(_known_served_stats, metrics, session) if metrics is not None else None,
            partial(self._direct_aside, session),
        )

    def session_closed(self, session: Session, reason: BaseException | None) -> None:
        log.debug("%s: connection with %r closed (%s)%s", self.name, session.peer_name,
                  session.origin, f": {reason}" if reason is not None else "")
        if self.metrics is not None:
            self.metrics.session_closed(session.connection, session.peer_name is not None)
        if self._routes.closed(session) and self._registry is not None:
            assert session.peer_name is not None
            self._registry.forget(session.peer_name)  # its address may be dead: look it up again

    def message_received(self, session: Session, payload: Any, size: int) -> None:
        assert self._mailbox is not None and session.peer_name is not None
        if self.metrics is not None:
            self.metrics.messages_received += 1
        self._mailbox.put(session.peer_name, payload, session, size)

    def call_received(self, session: Session, call: Call) -> None:
        if self._not_holding is not None:
            session.reply_error(call.id, ERROR_REMOTE, "NameNotFound",
                                f"{self.name!r} does not hold its name now ({self._not_holding})")
            return
        policy = self.security.rules
        if policy is not None and not self._may_call(policy, session, call.func):
            self._refuse_forbidden(session, call, policy)
            return
        entry = self.functions.by_name.get(call.func)
        if entry is None:
            if call.func == STATS_FUNCTION:
                session.reply(call.id, self.stats())
                return
            provided = ", ".join(self.functions.names()) or "none"
            message = f"{self.name!r} has no function {call.func!r} (it provides: {provided})"
            session.reply_error(call.id, ERROR_NO_SUCH_FUNCTION, "NoSuchFunction", message)
            if self.metrics is not None:
                self.metrics.call_failed(False, session.peer_name, call.func, 0.0,
                                         "no_such_function", message, _trace_of(call))
            return
        args = call.args
        if entry.with_caller:
            assert session.peer_name is not None
            args = [Caller(session.peer_name, session), *args]
        if entry.is_async:
            self._start_task(session, call, entry.fn, args)
            return
        # Served calls are timed from the read that brought them (one clock read per batch).
        metrics = self.metrics
        started = session.read_at
        span = None
        if self._tracer is not None:
            span = start_server_span(self._tracer, self.name, call.func, session.peer_name,
                                     _trace_of(call))
        try:
            result = entry.fn(*args)
        except Exception as exc:  # noqa: BLE001 -- any failure of user code goes back to the caller
            self._served(session, call, started, exc, span)
            return
        if type(result) is CoroutineType:  # a sync wrapper around a coroutine function
            self._start_task(session, call, lambda *_: result, (), started, span)
            return
        problem = session.reply(call.id, result)
        if span is not None or problem is not None:
            self._served(session, call, started, problem, span)
        elif metrics is not None:
            # Counted always, timed one call in SAMPLE_EVERY per function (`CallStats`).
            table = session.served_stats
            stats = table.get(call.func) if table is not None else None
            if stats is None:
                stats = _served_stats(metrics, session, call.func)
            n = stats.calls
            stats.calls = n + 1
            if not n & SAMPLE_MASK:
                stats.observe(perf_counter() - started)

    def _direct_aside(
        self, session: Session, body: bytes, outcome: Any, failed: bool, started: float
    ) -> None:
        """A call the connection took directly (see `_refresh_direct`) and cannot answer itself:
        the function raised (``failed``), or returned a coroutine or a result the C side cannot
        encode. It ran already; this answers it the way `call_received` would."""
        call = from_wire(codec_named("msgpack").decode(body))
        assert isinstance(call, Call)
        if failed:
            if not isinstance(outcome, Exception):
                raise outcome  # as from call_received: not ours to answer
            self._served(session, call, started, outcome, None)
        elif type(outcome) is CoroutineType:
            self._start_task(session, call, lambda *_: outcome, (), started)
        else:
            self._served(session, call, started, session.reply(call.id, outcome), None)

    def cancel_received(self, session: Session, call_id: int) -> None:
        task = session.running.get(call_id)
        if task is not None:
            task.cancel()

    # -- internals -------------------------------------------------------------------------------

    def _holding_changed(self, reason: str | None) -> None:
        """The registry lost (``reason``) or regained (None) our name: refuse calls meanwhile."""
        self._not_holding = reason
        self._refresh_direct()

    def _refresh_direct(self) -> None:
        """Let connections answer plain functions themselves, or stop them.

        Only while a call needs nothing from the node but the function: no policy to check, no
        span to start, our name held. Sessions on the C reactor then answer the synchronous
        functions that take no Caller without any Python in between (`Session.serve_directly`);
        the rest, and every call while this is off, come through `call_received`.
        """
        direct = self._direct
        direct.clear()
        if self._not_holding is None and self.security.rules is None and self._tracer is None:
            direct.update(self.functions.plain)

    def new_session(self, *, origin: str = "", accepting: bool = False) -> Session:
        """A session of this node (not yet attached to a stream), with its protocol options."""
        session = Session(
            self.name,
            self,
            codec=None if accepting else self.codec,
            max_frame=self.max_frame,
            origin=origin,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            window=self._window,
            auth=self.security.authenticator(self.name, accepting=accepting),
            handshake_timeout=self.security.handshake_timeout,
            max_hello=self.security.max_hello,
        )
        session.metrics = self.metrics
        return session

    def _own_mailbox(self) -> Mailbox:
        if self._mailbox is None:
            raise RuntimeError(f"node {self.name!r} is not running; use `async with node.serve()`")
        return self._mailbox

    def _through_codec(self, value: Any) -> Any:
        """``value`` as a peer would receive it: a copy, and EncodeError if the codec cannot carry it."""
        codec = codec_named(self.codec)
        return codec.decode(codec.encode(value))

    async def _call_self(
        self, func: str, args: tuple[Any, ...], timeout: float | None, context: Serving | None
    ) -> Any:
        """A call to this node's own name: run locally, with the errors a remote call would give."""
        entry = self.functions.by_name.get(func)
        if entry is None:
            if func == STATS_FUNCTION:
                return self._through_codec(self.stats())
            raise NoSuchFunction(self.name, func, self.functions.names())
        call_args = self._through_codec(list(args))
        if entry.with_caller:
            call_args = [Caller(self.name, None), *call_args]
        loop = asyncio.get_running_loop()
        due = loop.time() + timeout if timeout is not None else None
        inherited = False
        inherit = context.deadline if context is not None else None
        if inherit is not None and (due is None or inherit < due):
            due, inherited = inherit, True
        if due is not None and due <= loop.time():
            raise CallTimeout(self.name, func, 0.0, inherited=True)
        shown = (due - loop.time()) if inherited and due is not None else (timeout or 0.0)
        deadline = asyncio.timeout_at(due)
        try:
            async with deadline:
                result = entry.fn(*call_args)
                if inspect.iscoroutine(result):
                    result = await result
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                raise CallTimeout(self.name, func, shown, inherited=inherited) from None
            kind = _type_name(exc)
            raise RemoteError(
                self.name, func, kind, str(exc), "".join(traceback.format_exception(exc))
            ) from exc
        return self._through_codec(result)

    def stats(self) -> dict[str, Any]:
        """What this node counted (`Metrics.snapshot`; empty when made with ``metrics=False``),
        with its addresses, functions, host and open connections: the reply of
        ``namewire.stats``, which every node answers."""
        snapshot = (self.metrics or Metrics(self.name)).snapshot()
        snapshot.update(
            service=self.name,
            counting=self.metrics is not None,
            addresses=list(self.addresses),
            functions=self.functions.names(),
            host=host_id(),
            peers=[list(p) for p in self.peers],
        )
        return snapshot

    def _live_counters(self) -> dict[str, float]:
        """The series kept on the connections and the mailbox, for `Metrics.snapshot`."""
        sessions = self._routes.sessions
        return {
            "bytes_sent": sum(s.connection.bytes_sent for s in sessions),
            "bytes_received": sum(s.connection.bytes_received for s in sessions),
            "connections": sum(1 for s in sessions if s.is_open),
            "pending_calls": sum(s.pending_count for s in sessions),
            "running_calls": sum(len(s.running) for s in sessions),
            "mailbox_depth": len(self._mailbox) if self._mailbox is not None else 0,
        }

    def _served(
        self, session: Session, call: Call, started: float, error: BaseException | None, span: Any
    ) -> None:
        """A served call ended: the error reply, its count and its span."""
        if isinstance(error, EncodeError):  # reply() already answered with an error
            self.failures.failed(self.name, call.func, session.peer_name, error, _UNSENDABLE)
        elif isinstance(error, Exception):
            _reply_exception(session, call.id, error)
            self.failures.failed(self.name, call.func, session.peer_name, error)
        if span is not None:
            end_span(span, error)
        metrics = self.metrics
        if metrics is None:
            return
        table = session.served_stats
        stats = (table.get(call.func) if table is not None else None) or _served_stats(
            metrics, session, call.func)
        seconds = perf_counter() - started if stats.start() else None
        if error is None:
            if seconds is not None:
                stats.observe(seconds)
        else:
            metrics.call_failed(False, session.peer_name, call.func, seconds, outcome_of(error),
                                f"{_type_name(error)}: {error}", _trace_of(call), stats=stats)

    def _start_task(
        self,
        session: Session,
        call: Call,
        fn: Callable[..., Any],
        args: Sequence[Any],
        started: float | None = None,
        span: Any = None,
    ) -> None:
        limits = self.security
        if (
            len(session.running) >= limits.max_calls_per_connection
            or self._running_calls >= limits.max_running_calls
        ):
            self._refuse_busy(session, call)
            return
        # The task serves the call: calls it makes inherit the caller's deadline, request id and
        # trace (with spans on: this call's server span, which is also made current for the task).
        if started is None:
            started = session.read_at
        meta = call.meta
        trace = meta.get("t") if meta is not None else None
        if self._tracer is not None and span is None:
            span = start_server_span(self._tracer, self.name, call.func, session.peer_name, trace)
        context = contextvars.copy_context()
        if span is not None:
            trace = traceparent_of(span)
            context.run(attach_span, span)
        request = meta.get("r") if meta is not None else None
        context.run(serving.set, Serving(session.deadline_of(call), request, trace))
        task = asyncio.get_running_loop().create_task(
            self._answer(session, call, fn(*args), started, span), context=context
        )
        session.running[call.id] = task
        self._running_calls += 1
        task.add_done_callback(lambda _: self._call_done(session, call.id))

    def _call_done(self, session: Session, call_id: int) -> None:
        session.running.pop(call_id, None)
        self._running_calls -= 1
        limits = self.security
        if (
            self._busy
            and self._running_calls <= limits.max_running_calls // 2
            and len(session.running) <= limits.max_calls_per_connection // 2
        ):
            self._busy = False

    def _refuse_busy(self, session: Session, call: Call) -> None:
        limits = self.security
        if len(session.running) >= limits.max_calls_per_connection:
            reason = (f"{len(session.running)} calls from this connection running, the limit is "
                      f"{limits.max_calls_per_connection}")
        else:
            reason = (f"{self._running_calls} calls running in {self.name!r}, the limit is "
                      f"{limits.max_running_calls}")
        if not self._busy:
            self._busy = True
            log.warning("node %r: refusing calls as busy (%s; caller %r at %s)", self.name,
                        reason, session.peer_name, session.origin)
        session.reply_error(call.id, ERROR_BUSY, "Busy", reason)

    def _may_call(self, policy: Policy, session: Session, func: str) -> bool:
        # A member of a group (PlusServer/2) answers calls made to the group's name too.
        identity = session.peer_identity
        return policy.may_call(identity, self.name, func) or bool(
            self.group and policy.may_call(identity, self.group, func))

    def _refuse_forbidden(self, session: Session, call: Call, policy: Policy) -> None:
        identity = session.peer_identity
        policy.log_refused_call(self.name, call.func, identity, session.peer_name, session.origin)
        session.reply_error(call.id, ERROR_FORBIDDEN, "Forbidden",
                            f"{policy.describe(identity)} may not call {self.name}.{call.func}")

    async def _answer(
        self, session: Session, call: Call, coro: Any, started: float, span: Any
    ) -> None:
        try:
            result = await coro
        except asyncio.CancelledError as exc:
            # The caller gave up (cancel) or the node is stopping: nobody waits for an answer.
            if span is not None or self.metrics is not None:
                self._served(session, call, started, exc, span)
            raise
        except Exception as exc:  # noqa: BLE001 -- any failure of user code goes back to the caller
            self._served(session, call, started, exc, span)
        else:
            problem = session.reply(call.id, result)
            if span is not None or problem is not None or self.metrics is not None:
                self._served(session, call, started, problem, span)

    def _functions_changed(self) -> None:
        if self._registry is None or self._listeners is None or self._stopping:
            return  # not serving (yet): `start` registers what is there then
        loop = self._loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is not None and here is not loop:  # added from another thread (namewire.sync)
            loop.call_soon_threadsafe(self._functions_changed)
        elif self._reregistering is None:
            self._reregistering = asyncio.get_running_loop().create_task(self._register_again())

    async def _register_again(self) -> None:
        await asyncio.sleep(0)  # functions added in a row: one registration
        self._reregistering = None
        registry = self._registry
        if registry is None or self._stopping:
            return
        try:
            await registry.register(self._registration(self._metadata))
        except NamewireError as exc:
            log.warning("%s: functions added while serving are callable but not yet registered "
                        "with the name service: %s", self.name, exc)
        else:
            log.info("%s: registered again, with functions %s", self.name,
                     ", ".join(self.functions.names()))

    def _registration(self, metadata: dict[str, Any]) -> Registration:
        return Registration(
            name=self.name,
            addresses=self.addresses,
            functions=self.functions.names(),
            idempotent=self.functions.idempotent_names(),
            host=host_id(),
            metadata=metadata,
            pid=os.getpid(),
            group=self.group,
        )


    def _choose(self, func: str, providers: list[str], strategy: str) -> str:
        if strategy == "least_pending":
            def load(p: str) -> int:
                route = self._routes.by_name.get(p)
                return route.pending_count if route is not None else 0

            return min(providers, key=load)
        if strategy != "round_robin":
            raise ValueError(f"unknown strategy {strategy!r}: 'round_robin' or 'least_pending'")
        turn = self._round_robin.get(func, 0)
        self._round_robin[func] = turn + 1
        return providers[turn % len(providers)]

    async def _route_or_group(self, name: str, *, sticky: bool) -> Session:
        """The session to ``name``, or to a live member when ``name`` is a group."""
        groups = self._groups
        if name not in groups.known:
            try:
                return await self._route(name)
            except NameNotFound:
                if self._registry is None or not await groups.is_group(name, self._registry):
                    raise
        assert self._registry is not None
        return await groups.session(name, self._registry, sticky=sticky)

    async def _route(self, name: str) -> Session:
        if not self._running or self._stopping:
            raise RuntimeError(f"node {self.name!r} is not running; use `async with node.serve()`")
        if self._registry is None:
            route = self._routes.inbound_route(name)  # standalone: hello names are all there is
            if route is not None:
                return route
            raise NameNotFound(
                name, f"no connection to {name!r} and node {self.name!r} has no name service to ask"
            )
        return await self._routes.open(name, self._registry)


def _advertise_urls(advertise: str | Sequence[str] | None) -> tuple[str, ...]:
    """The ``advertise=`` URLs, checked (`parse_address` raises ValueError) and normalised."""
    if advertise is None:
        return ()
    urls = [advertise] if isinstance(advertise, str) else list(advertise)
    return tuple(str(parse_address(url)) for url in urls)


def _served_stats(metrics: Metrics, session: Session, func: str) -> CallStats:
    """The counts of ``func`` served to ``session``'s peer, kept on the session from now on."""
    table = session.served_stats
    if table is None:
        table = session.served_stats = {}
    stats = table[func] = metrics.served_stats(session.peer_name, func)
    return stats


def _known_served_stats(metrics: Metrics, session: Session, func: str) -> CallStats:
    """The counts of ``func`` served to ``session``'s peer, as `call_received` keeps them."""
    table = session.served_stats
    stats = table.get(func) if table is not None else None
    return stats if stats is not None else _served_stats(metrics, session, func)


def _trace_of(call: Call) -> str | None:
    meta = call.meta
    trace = meta.get("t") if meta is not None else None
    return trace if isinstance(trace, str) else None


def _type_name(exc: BaseException) -> str:
    """How an exception's type travels: builtins and namewire's errors by their short name."""
    kind = type(exc)
    if kind.__module__ == "builtins" or isinstance(exc, NamewireError):
        return kind.__name__ if isinstance(exc, NamewireError) else kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _reply_exception(session: Session, call_id: int, exc: Exception) -> None:
    session.reply_error(
        call_id,
        ERROR_REMOTE,
        _type_name(exc),
        str(exc),
        "".join(traceback.format_exception(exc)),
    )
