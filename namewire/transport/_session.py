"""`Session`: the asyncio adapter that runs the wire layer's `RpcConnection` over any `Stream`.

The protocol (hello, calls, replies, errors, deadlines, liveness, message credit) is all in
`RpcConnection`; this module only moves bytes and time in and events out: it feeds what the stream
reads, writes what the connection has to send once per loop turn, arms one timer at the
connection's next deadline, resolves the futures of calls, parks senders for drain or message
credit, and reports what the peer sends (messages, calls, cancels) to a `SessionHandler`. It knows
the peer's node name from the hello, but nothing of how names are resolved: that is the node's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any, Protocol

from ..errors import AuthError, EncodeError, HandshakeTimeout, PeerLost, ProtocolError
from ..runtime._metrics import SAMPLE_MASK, CallStats, Metrics, outcome_of
from ..wire import (
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_HELLO,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WINDOW,
    Answered,
    Authenticator,
    Call,
    Cancel,
    Closed,
    Failed,
    MessageReceived,
    Opened,
    RpcConnection,
    SenderBlocked,
    WindowOpened,
)
from ._streams import Stream

__all__ = ["FLUSH_BYTES", "Session", "SessionHandler"]

log = logging.getLogger("namewire.transport")

# Queued frames past this size, or this many frames, are written at once instead of at the end
# of the loop turn. The count is what lets the two sides of a busy connection work at once: a
# read carrying 1000 calls is answered in chunks, so the caller's side starts on the first replies
# while this side still works on the rest, instead of both taking turns (docs/architecture.md).
FLUSH_BYTES = 8192
FLUSH_FRAMES = 32
# Output buffered in the stream above which we also stop reading from the peer: a peer that floods
# us with calls but does not read the replies must not grow our memory without bound. Far above the
# stream's high-water mark so two peers that both write hard do not stop reading each other at once.
READ_STOP_WRITE_BUFFER = 8 * 1024 * 1024


class SessionHandler(Protocol):
    """What a session reports to its owner. Called from loop callbacks: never block."""

    def session_opened(self, session: Session) -> None: ...

    def message_received(self, session: Session, payload: Any, size: int) -> None:
        """A message; the owner calls ``session.message_consumed(size)`` once it is taken."""

    def call_received(self, session: Session, call: Call) -> None: ...

    def cancel_received(self, session: Session, call_id: int) -> None: ...

    def session_closed(self, session: Session, reason: BaseException | None) -> None: ...


class Session:
    """A namewire connection. ``codec`` None means this side accepted and adopts the peer's codec.

    Made unattached; `attach` gives it its stream. Until the peer's hello arrives ``peer_name`` is
    None (`wait_open` waits for it); calls written before that are pipelined behind our hello.
    ``ping_interval``/``ping_timeout``/``window`` are `RpcConnection`'s liveness and message flow.
    """

    __slots__ = (
        "_closed",
        "_closing",
        "_conn",
        "_direct_counts",
        "_drain_waiters",
        "_flush_scheduled",
        "_handler",
        "_loop",
        "_lost",
        "_made_stats",
        "_msg_waiters",
        "_opened",
        "_reading_held",
        "_rearm_below",
        "_receiving",
        "_stream",
        "_timer",
        "_timer_at",
        "_unflushed",
        "_write_paused",
        "close_reason",
        "direct_calls",
        "direct_replies",
        "metrics",
        "on_lost",
        "origin",
        "peer_identity",
        "peer_info",
        "peer_name",
        "read_at",
        "running",
        "served_stats",
    )

    def __init__(
        self,
        local_name: str,
        handler: SessionHandler,
        *,
        codec: str | None = "msgpack",
        info: dict[str, Any] | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        origin: str = "",
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        window: tuple[int, int] = DEFAULT_WINDOW,
        auth: Authenticator | None = None,
        handshake_timeout: float | None = None,
        max_hello: int = DEFAULT_MAX_HELLO,
    ) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self._conn = RpcConnection(
            local_name,
            codec=codec,
            info=info,
            max_frame=max_frame,
            origin=origin,
            clock=loop.time,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            window=window,
            auth=auth,
            handshake_timeout=handshake_timeout,
            max_hello=max_hello,
        )
        self._handler = handler
        self._stream: Stream | None = None
        # A call with a timeout under this may be due before the armed timer (see `call`).
        self._rearm_below = (
            max(ping_interval, ping_timeout) if ping_interval is not None else float("inf")
        )
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._flush_scheduled = False
        self._unflushed = 0  # frames queued since the last flush
        self._receiving = False
        self._write_paused = False
        self._reading_held = False
        # Closing starts with close()/abort() or the end of the protocol; `_lost` once the stream is
        # gone. The futures exist only while somebody waits (memory per idle connection matters).
        self._closing = False
        self._lost = False
        self.close_reason: BaseException | None = None
        self._opened: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[BaseException | None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._msg_waiters: deque[asyncio.Future[None]] | None = None
        self.origin = origin
        # Where calls made on this session are counted (None: not counted); set by the owner.
        self.metrics: Metrics | None = None
        # perf_counter() at the last read, taken once per read while counting: the start of the
        # calls it brings, one clock read per batch.
        self.read_at = 0.0
        # The histograms of this session's calls, by function, resolved from `metrics` at each
        # function's first call (made here; served: filled by the owner). None until then: an idle
        # connection holds no table.
        self._made_stats: dict[str, CallStats] | None = None
        self.served_stats: dict[str, CallStats] | None = None
        self.peer_name: str | None = None
        self.peer_info: dict[str, Any] = {}
        # Who the peer proved to be: its verified TLS certificate's name; None without one (the
        # shared secret proves membership of the cluster, not a particular identity).
        self.peer_identity: str | None = None
        # Calls from the peer that run as tasks (async functions), by id, so a cancel can reach them.
        self.running: dict[int, asyncio.Task[Any]] = {}
        # Called once the stream is gone (a listener counting its open connections).
        self.on_lost: Callable[[], None] | None = None
        # The stream's count of the calls it answered and the replies it matched itself
        # (`serve_directly`, `_hello_received`), while it does.
        self._direct_counts: Callable[[], tuple[int, int, int, int]] | None = None
        self.direct_calls = 0  # calls it answered so far (read through `connection`)
        self.direct_replies = 0  # replies to our calls it matched so far (the same)

    def attach(self, stream: Stream) -> None:
        """Run over ``stream`` (connected); our hello, if we speak first, leaves at once."""
        self._stream = stream
        if not self.origin:
            self.origin = stream.where
            self._conn.set_origin(stream.where)
        self.peer_identity = stream.peer_identity
        stream.start(self, max_frame=self._conn.max_frame)
        if self._conn.next_deadline() is not None:
            self._arm()  # the handshake's deadline
        self._flush()

    # -- what the owner uses ----------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.peer_name is not None and not self._closing

    @property
    def is_closed(self) -> bool:
        return self._closing

    @property
    def pending_count(self) -> int:
        """Calls this side made on the session that are still waiting for an answer."""
        return self._conn.pending_count

    @property
    def partial_bytes(self) -> int:
        """Bytes of an incomplete frame from the peer, wherever it is being assembled."""
        stream = self._stream
        if stream is not None and stream.cuts_frames:
            return int(getattr(stream, "buffered", 0))
        return self._conn.partial_bytes

    @property
    def connection(self) -> RpcConnection:
        """The protocol state (read-only use: counters, the peer's window), with the calls the
        stream answered itself counted in."""
        if self._direct_counts is not None:
            self._fold_direct()
        return self._conn

    def serve_directly(
        self,
        table: dict[str, Callable[..., Any]],
        stats_of: Callable[[str], CallStats] | None,
        aside: Callable[[bytes, Any, bool, float], None],
    ) -> bool:
        """Let the stream answer calls of the functions in ``table`` itself, when it can (the C
        reactor, msgpack): each call is counted in ``stats_of(func)``, and one the stream cannot
        answer after calling the function goes to ``aside(body, outcome, failed, started)``.
        The owner may change ``table`` at any time; False when the stream cannot do this."""
        serve = getattr(self._stream, "serve_direct", None)
        if serve is None or self._conn.codec != "msgpack" or not self._conn.is_open:
            return False
        serve(table, stats_of, aside, self._conn.peer_max_frame)
        self._direct_counts = self._stream.take_direct_counts  # type: ignore[union-attr]
        return True

    def _match_replies_in_stream(self) -> None:
        """On the C reactor, replies to our calls are matched as they are read: the entry leaves
        the core's pending table and the future gets its result, with no Python in between."""
        match = getattr(self._stream, "match_replies", None)
        if match is not None and self._conn.codec == "msgpack":
            match(self._conn.pending_calls)
            self._direct_counts = self._stream.take_direct_counts  # type: ignore[union-attr]

    async def wait_open(self) -> None:
        """Wait for the peer's hello; raise `PeerLost` if the connection ends first."""
        if self.peer_name is not None:
            return
        if self._lost or self._closing:
            if isinstance(self.close_reason, AuthError):
                raise self.close_reason
            raise PeerLost(None, self._conn.end_reason or "lost before its hello",
                           address=self.origin or None)
        if self._opened is None:
            self._opened = self._loop.create_future()
        await asyncio.shield(self._opened)

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection is gone; return why (None for a clean close)."""
        if self._lost:
            return self.close_reason
        if self._closed is None:
            self._closed = self._loop.create_future()
        return await asyncio.shield(self._closed)

    def deadline_of(self, call: Call) -> float | None:
        """The absolute deadline (loop time) a received ``call`` carries, if any."""
        meta = call.meta
        if meta is None:
            return None
        budget = meta.get("d")
        if type(budget) is not int:
            return None
        return self._conn.last_received + budget / 1000

    async def call(
        self,
        func: str,
        args: Sequence[Any],
        timeout: float | None,
        deadline: float | None = None,
        request: int | None = None,
        trace: str | None = None,
    ) -> Any:
        """Call ``func(*args)`` on the peer and return its result.

        ``deadline`` (loop time) is an inherited limit, ``request`` the request id to carry,
        ``trace`` a W3C traceparent. Raises `NoSuchFunction`, `RemoteError`, `PeerLost`,
        `CallTimeout`, `EncodeError`, `MessageTooLarge`. Cancelling the awaiting task sends a
        cancel to the peer.
        """
        if self._closing:
            raise self._lost_error(func)
        fut = self._loop.create_future()
        conn = self._conn
        call_id = conn.call(func, args, fut, timeout=timeout, deadline=deadline, request=request,
                            trace=trace)
        if self._timer is None or deadline is not None or (
            timeout is not None and timeout < self._rearm_below
        ):
            self._arm()
        self._written()
        # Every call is counted; one in SAMPLE_EVERY per function is timed (`CallStats`).
        metrics = self.metrics
        stats: CallStats | None = None
        started = 0.0
        if metrics is not None:
            table = self._made_stats
            stats = table.get(func) if table is not None else None
            if stats is None:
                stats = self._stats_of_made(metrics, func)
            n = stats.calls
            stats.calls = n + 1
            if not n & SAMPLE_MASK:
                started = perf_counter()
        try:
            if self._write_paused:
                await self._drain()
            result = await fut
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and conn.cancel(call_id) is not None:
                self._written()
            if metrics is not None:
                metrics.call_failed(True, self.peer_name, func,
                                    perf_counter() - started if started else None,
                                    outcome_of(exc), str(exc), trace, stats=stats)
            raise
        if started and stats is not None:
            # The round trip as the caller sees it (the reply may have been matched in C, with no
            # read time taken in Python).
            stats.observe(perf_counter() - started)
        return result

    async def send_msg(self, payload: Any) -> None:
        """Send a message. Waits while the peer's window is full (its mailbox holds what we sent
        and it has not read) and while the stream's buffer is above its high-water mark."""
        if self._closing:
            raise self._lost_error(None)
        if self._msg_waiters or not self._conn.send_msg(payload):
            await self._wait_for_credit(payload)
        self._written()
        if self._write_paused:
            await self._drain()

    def send_msg_nowait(self, payload: Any) -> bool:
        """Queue a message if the peer's window has room now; False (nothing queued) if not.
        Raises `PeerLost` once closing, `EncodeError`, `MessageTooLarge`."""
        if self._closing:
            raise self._lost_error(None)
        if self._msg_waiters or not self._conn.send_msg(payload):
            return False
        self._written()
        return True

    def push(self, payload: Any) -> None:
        """Write a control message without waiting (registry notices); dropped once closing."""
        if not self._closing:
            self._conn.send_msg(payload, control=True)
            self._written()

    def reply(self, call_id: int, result: Any) -> EncodeError | None:
        """Answer a call; a result that cannot be sent is answered with an error, and returned."""
        problem = self._conn.reply(call_id, result)
        self._written()
        return problem

    def reply_error(
        self, call_id: int, code: str, type_name: str, message: str, traceback: str = ""
    ) -> None:
        self._conn.reply_error(call_id, code, type_name, message, traceback)
        self._written()

    def message_consumed(self, size: int) -> None:
        """The owner took a message of ``size`` bytes out of its mailbox: credit to the sender."""
        self._conn.message_consumed(size)
        if not self._flush_scheduled and not self._receiving:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def fail_senders(self, exc: BaseException) -> None:
        """Make every `send_msg` still waiting for message credit raise ``exc``; their messages
        are not sent (a worker channel closed while its producers wait)."""
        for waiter in self._msg_waiters or ():
            if not waiter.done():
                waiter.set_exception(exc)

    def close(self) -> None:
        """Close after flushing what is written."""
        if not self._closing:
            self._closing = True
        self._flush()
        if self._stream is not None:
            self._stream.close()

    def abort(self, reason: BaseException | None = None) -> None:
        """Close at once, dropping unwritten data; ``reason`` is what pending calls are told."""
        if not self._closing:
            self._closing = True
            self.close_reason = reason
        if self._stream is not None:
            self._stream.abort()

    # -- StreamHandler ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._received(self._conn.receive_data, data)

    def frames_received(self, frames: list[bytes]) -> None:
        self._received(self._conn.receive_frames, frames)

    def _received(self, feed: Callable[[Any], None], data: Any) -> None:
        """One read: into the core, its events out, then what they made us write (once)."""
        if self.metrics is not None:
            self.read_at = perf_counter()
        feed(data)
        self._receiving = True
        try:
            self._dispatch(self._conn.events_received())
        finally:
            self._receiving = False
        self._flush()

    def writing_paused(self) -> None:
        self._write_paused = True

    def writing_resumed(self) -> None:
        self._write_paused = False
        if self._reading_held:
            self._reading_held = False
            if self._stream is not None and not self._closing:
                self._stream.resume_reading()
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def stream_lost(self, exc: BaseException | None) -> None:
        reason = self.close_reason if self._closing and self.close_reason is not None else exc
        self._closing = self._lost = True
        self.close_reason = reason
        conn = self.connection  # with the direct calls' counts, for the last time
        self._direct_counts = None
        conn.connection_lost(reason)
        self._dispatch(conn.events_received())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lost = PeerLost(self.peer_name, conn.end_reason or "connection closed",
                        address=self.origin or None)
        for waiters in (self._drain_waiters, self._msg_waiters):
            for waiter in waiters or ():
                if not waiter.done():
                    waiter.set_exception(lost)
        self._drain_waiters = self._msg_waiters = None
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(reason if isinstance(reason, AuthError) else lost)
            self._opened.exception()  # retrieved: nobody may be waiting for it
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(reason)
        for task in self.running.values():
            task.cancel()
        self._stream = None  # no cycle through the stream: a closed session is freed at once
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost()
        self._handler.session_closed(self, reason)

    # -- internals ---------------------------------------------------------------------------------

    def _dispatch(self, events: list[Any]) -> None:
        handler = self._handler
        for event in events:
            kind = type(event)
            if kind is Answered:
                fut = event.handle
                if not fut.done():
                    fut.set_result(event.result)
            elif kind is Call:
                handler.call_received(self, event)
            elif kind is MessageReceived:
                handler.message_received(self, event.payload, event.size)
            elif kind is Failed:
                fut = event.handle
                if not fut.done():
                    fut.set_exception(event.error)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%r: call failed (%s): %s", self._conn.name, self._describe(),
                              event.error)
            elif kind is Cancel:
                handler.cancel_received(self, event.id)
            elif kind is WindowOpened:
                self._wake_sender()
            elif kind is Opened:
                self._hello_received(event)
            elif kind is SenderBlocked:
                self._sender_blocked(event)
            elif kind is Closed:
                self._protocol_closed(event.reason)

    def _hello_received(self, opened: Opened) -> None:
        self.peer_name = opened.peer
        if self._timer is not None:
            # The handshake's deadline is met: the timer moves to the next one (pings, calls).
            self._timer.cancel()
            self._timer = None
            self._arm()
        self.peer_info = opened.info
        self._match_replies_in_stream()
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)
        self._handler.session_opened(self)

    def _protocol_closed(self, reason: BaseException | None) -> None:
        if self._lost:
            return  # the stream ended: stream_lost is doing the rest
        if reason is not None:
            # A handshake that never finished is what scanners and idle sockets do: not a warning.
            level = (
                logging.INFO if isinstance(reason, HandshakeTimeout)
                else logging.WARNING if isinstance(reason, ProtocolError | PeerLost | AuthError)
                else logging.INFO
            )
            log.log(level, "%r: closing connection %s: %s", self._conn.name, self._describe(),
                    reason)
        if self._conn.queued_bytes:  # the core's parting word (a refusal): the peer reads it
            self.close_reason = reason
            self.close()
            return
        self.abort(reason)

    def _sender_blocked(self, event: SenderBlocked) -> None:
        count, limit = self._conn.window
        log.warning(
            "%r: mailbox full for sender %r: %d messages (%d bytes) unread, the bound per sender "
            "is %d messages / %d bytes; its send_msg() waits until get_msg() takes some",
            self._conn.name, self.peer_name, event.unread, event.unread_bytes, count, limit,
        )

    async def _wait_for_credit(self, payload: Any) -> None:
        """Queue behind earlier senders until the peer's window has room for ``payload``."""
        waiters = self._msg_waiters
        if waiters is None:
            waiters = self._msg_waiters = deque()
        waiter = self._loop.create_future()
        waiters.append(waiter)
        try:
            while True:
                await waiter
                if self._closing:
                    raise self._lost_error(None)
                if self._conn.send_msg(payload):
                    return
                waiter = self._loop.create_future()
                waiters.appendleft(waiter)  # still first in line
        finally:
            if waiters and waiters[0] is waiter and waiter.done():
                waiters.popleft()
            elif waiter in waiters:
                waiters.remove(waiter)
            self._wake_sender()  # the next in line may fit too

    def _wake_sender(self) -> None:
        waiters = self._msg_waiters
        if waiters:
            head = waiters[0]
            if not head.done():
                head.set_result(None)

    async def _drain(self) -> None:
        if self._drain_waiters is None:
            self._drain_waiters = []
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _stats_of_made(self, metrics: Metrics, func: str) -> CallStats:
        stats = metrics.made_stats(self.peer_name, func)
        if self.peer_name is not None:  # a call pipelined behind our hello is not kept under ""
            if self._made_stats is None:
                self._made_stats = {}
            self._made_stats[func] = stats
        return stats

    def _lost_error(self, func: str | None) -> PeerLost:
        why = self._conn.end_reason or "connection closed"
        if func is None:
            return PeerLost(self.peer_name, why, operation="send_msg", address=self.origin or None)
        return PeerLost(self.peer_name, why, function=func, address=self.origin or None)

    def _arm(self) -> None:
        """Put the one timer at the connection's next deadline (or remove it)."""
        due = self._conn.next_deadline()
        timer = self._timer
        if due is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        if timer is not None:
            if self._timer_at <= due:
                return
            timer.cancel()
        self._timer_at = due
        self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        conn = self.connection  # calls answered directly were heard from the peer too
        conn.handle_timeout()
        self._dispatch(conn.events_received())
        if not self._closing:
            self._arm()
        self._flush()

    def _written(self) -> None:
        """Something was queued: write it at the end of this loop turn, or now past FLUSH_BYTES
        or FLUSH_FRAMES.

        A stream write costs about as much as building a small frame, so writing each frame on its
        own would double the cost of a call; flushing early keeps the memory of a task that sends
        in a loop without yielding bounded, lets it feel back-pressure, and hands the peer work
        while this side is still busy.
        """
        self._unflushed += 1
        if self._unflushed >= FLUSH_FRAMES or self._conn.queued_bytes >= FLUSH_BYTES:
            self._flush()
        elif not self._flush_scheduled and not self._receiving:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._unflushed = 0
        stream = self._stream
        if stream is None or self._lost:
            return
        conn = self._conn
        if stream.takes_frames:
            for body in conn.frames_to_send():
                stream.write(body)
        else:
            data = conn.data_to_send()
            if not data:
                return
            stream.write(data)
        if (
            self._write_paused
            and not self._reading_held
            and stream.write_buffer_size() > READ_STOP_WRITE_BUFFER
        ):
            self._reading_held = True
            stream.pause_reading()

    def _fold_direct(self) -> None:
        assert self._direct_counts is not None
        calls, replies, received, sent = self._direct_counts()
        if calls or replies:
            self.direct_calls += calls
            self.direct_replies += replies
            conn = self._conn
            conn.bytes_received += received
            conn.bytes_sent += sent
            conn.last_received = self._loop.time()

    def _describe(self) -> str:
        if self.peer_name:
            return f"{self.peer_name!r} ({self.origin})" if self.origin else repr(self.peer_name)
        return self.origin or "(unknown peer)"
