"""`RpcConnection`: everything a namewire connection means, with no I/O.

Feed it what the stream read (`receive_data` for bytes, `receive_frames` for streams that cut frames
themselves, such as the C reactor or a WebSocket), pull what happened (`events_received`), write what
it has to say (`data_to_send`, or `frames_to_send` for message streams), and give it the time when it
asks (`next_deadline`, `handle_timeout`). It owns:

- the handshake: version, node name, codec (the accepting side adopts the caller's), the peer's frame
  limit and message window, and an authentication step (`Authenticator`; none by default);
- calls it made: ids, the pending table, deadlines on the injected clock (any order, exact), the
  budget sent with each call, cancel, and error envelopes mapped to exceptions;
- liveness: while anything waits on the peer (calls, unread messages), silence for ``ping_interval``
  sends a ping, and no answer within ``ping_timeout`` ends the connection with `PeerLost`;
- message flow: a per-connection credit window, so a receiver that does not read its mailbox stops
  one sender's messages while calls and replies on the same connection keep flowing.

The clock is a function returning seconds (``time.monotonic`` by default; the asyncio adapter passes
``loop.time``; tests pass a fake). A ``handle`` is whatever the caller wants back with the answer
(the adapter files a future); the core never looks at it.
"""

from __future__ import annotations

import heapq
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..errors import (
    AuthError,
    Busy,
    CallTimeout,
    EncodeError,
    Forbidden,
    FrameTooLarge,
    HandshakeTimeout,
    MessageTooLarge,
    NoSuchFunction,
    PeerLost,
    ProtocolError,
    RemoteError,
    call_site,
)
from ._codecs import Codec, codec_named, sniff_codec
from ._envelopes import (
    ERROR_AUTH,
    ERROR_BUSY,
    ERROR_FORBIDDEN,
    ERROR_NO_SUCH_FUNCTION,
    ERROR_REMOTE,
    ERROR_TOO_LARGE,
    KIND_CALL,
    KIND_MSG,
    KIND_REPLY,
    PROTOCOL_VERSION,
    Call,
    Cancel,
    Credit,
    Envelope,
    Error,
    Hello,
    Msg,
    Ping,
    Pong,
    Reply,
    from_wire,
    to_wire,
)
from ._events import (
    Answered,
    Closed,
    Event,
    Failed,
    MessageReceived,
    Opened,
    PongReceived,
    SenderBlocked,
    WindowOpened,
)
from ._frames import DEFAULT_MAX_FRAME, FrameDecoder, join_frames

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_HELLO",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_WINDOW",
    "Authenticator",
    "RpcConnection",
]

DEFAULT_PING_INTERVAL = 2.0
"""Seconds of silence from a peer we wait on before pinging it."""
DEFAULT_PING_TIMEOUT = 4.0
"""Seconds a ping may go unanswered (with nothing else heard) before the peer is lost."""
DEFAULT_WINDOW = (1000, 4 * 1024 * 1024)
"""Messages, and bytes of them, one sender may have unread in a receiver's mailbox."""

DEFAULT_HANDSHAKE_TIMEOUT = 5.0
"""Seconds a connection may take to complete its handshake before it is closed."""
DEFAULT_MAX_HELLO = 64 * 1024
"""Bytes a hello may have: what a peer not yet authenticated may make us decode."""

DEFAULT_CANCEL_GRACE = 0.2
"""Seconds after a call timed out before it is cancelled at the peer: the peer's copy of the
deadline (inherited by the calls it makes) ends after ours by the one-way latency, and it should see
its budget run out (`CallTimeout`) rather than be cancelled under its feet."""

_new = tuple.__new__
_WINDOW_OPENED = WindowOpened()
_PROVIDES = re.compile(r"\(it provides: (.*)\)$")
# The deadline heap keeps answered calls until they reach the top; rebuild it when they dominate.
_HEAP_SLACK = 256


class _NoFifo(deque):  # type: ignore[type-arg]
    """Every connection's FIFO of call deadlines until its first call on its usual timeout gives
    it its own (`RpcConnection.call`). Shared, so filing a deadline in it is a bug, loudly."""

    def append(self, entry: Any) -> None:
        raise RuntimeError("a call deadline filed before the connection has its own FIFO")


_NO_FIFO: deque[tuple[float, int]] = _NoFifo()


class Authenticator(Protocol):
    """The handshake's authentication step. The default accepts every peer.

    An authenticator may also run a third leg (`SecretAuthenticator` does): it then has
    ``holds_output`` True on the connecting side (nothing but the hello leaves until the peer's hello
    passed `verify`, then ``proof()`` goes out as a second hello) and ``needs_proof`` True on the
    accepting side (the connection opens only once that second hello passed ``verify_proof``).
    ``identity`` names who the peer proved to be, once it has. All four are optional.
    """

    def hello_info(self) -> dict[str, Any]:
        """Entries for our hello's info map (credentials, a challenge). The accepting side asks
        after `verify` of the peer's hello, so its answer may depend on the peer's challenge."""

    def verify(self, hello: Hello) -> None:
        """Accept the peer's hello or raise `AuthError` saying why."""


class _NoAuth:
    identity = None

    def hello_info(self) -> dict[str, Any]:
        return {}

    def verify(self, hello: Hello) -> None:
        return None


class RpcConnection:
    """One end of a namewire connection; see the module docstring.

    ``codec`` is what a connecting side speaks ("msgpack" or "json"); an accepting side passes None
    and answers in the codec of the peer's hello. ``max_frame`` bounds what we accept (and is told to
    the peer, which then fails oversize calls on its side instead of sending them). ``window`` is
    (messages, bytes) the peer may have unread here; ``ping_interval`` None turns liveness off.
    """

    __slots__ = (
        "_auth",
        "_awaiting_proof",
        "_blocked",
        "_cancel_grace",
        "_cancels",
        "_clock",
        "_codec",
        "_consumed",
        "_consumed_bytes",
        "_credit_due",
        "_deadlines",
        "_decoder",
        "_ended",
        "_events",
        "_fifo",
        "_fifo_budget",
        "_fifo_timeout",
        "_handshake_by",
        "_handshake_timeout",
        "_hello_out",
        "_holding",
        "_info",
        "_next_id",
        "_out",
        "_parting",
        "_peer_max_frame",
        "_pending",
        "_ping_sent",
        "_ping_token",
        "_send_window",
        "_unacked",
        "_unacked_bytes",
        "_unread",
        "_unread_bytes",
        "accepting",
        "bytes_received",
        "bytes_sent",
        "end_reason",
        "last_received",
        "max_frame",
        "max_hello",
        "name",
        "origin",
        "peer",
        "peer_info",
        "ping_interval",
        "ping_timeout",
        "queued_bytes",
        "window",
    )

    def __init__(
        self,
        name: str,
        *,
        codec: str | None = "msgpack",
        info: dict[str, Any] | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        origin: str = "",
        clock: Callable[[], float] = time.monotonic,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        window: tuple[int, int] = DEFAULT_WINDOW,
        auth: Authenticator | None = None,
        cancel_grace: float = DEFAULT_CANCEL_GRACE,
        handshake_timeout: float | None = None,
        max_hello: int = DEFAULT_MAX_HELLO,
    ) -> None:
        if ping_interval is not None and ping_interval <= 0:
            raise ValueError(f"ping_interval must be positive or None, not {ping_interval}")
        if ping_timeout <= 0:
            raise ValueError(f"ping_timeout must be positive, not {ping_timeout}")
        if len(window) != 2 or window[0] <= 0 or window[1] <= 0:
            raise ValueError(f"window must be (messages, bytes), both positive, not {window}")
        self.name = name
        self.accepting = codec is None
        self.origin = origin
        self.max_frame = max_frame
        self.window = (int(window[0]), int(window[1]))
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.peer: str | None = None
        self.peer_info: dict[str, Any] = {}
        self.end_reason: str | None = None  # why the connection ended, once it has
        self.queued_bytes = 0  # bytes of frame bodies waiting in data_to_send (read-only)
        # Bodies handed out to send and taken in, in bytes (read-only; counted per batch).
        self.bytes_sent = 0
        self.bytes_received = 0
        self._auth: Authenticator = auth if auth is not None else _NoAuth()
        # The caller's own hello fields; the full hello is built when it is sent (`_hello_info`),
        # so an idle connection keeps no copy of it.
        self._info = dict(info) if info else None
        self.max_hello = max_hello
        # The handshake: its deadline, the accepting side's wait for a proof (the peer's first
        # hello, kept meanwhile), and the connecting side's output held behind its hello.
        self._handshake_timeout = handshake_timeout
        self._handshake_by = clock() + handshake_timeout if handshake_timeout is not None else None
        self._awaiting_proof: Hello | None = None
        self._holding = codec is not None and bool(getattr(self._auth, "holds_output", False))
        self._hello_out = False
        self._codec: Codec | None = codec_named(codec) if codec is not None else None
        # Made at the first `receive_data`: streams that cut frames themselves (the C reactor, a
        # WebSocket) never need one.
        self._decoder: FrameDecoder | None = None
        self._clock = clock
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._ended = False
        self._parting: bytes | None = None  # a refusal, the last frame sent (`_refuse`)
        # Calls we made: id -> (handle, func, timeout shown in errors, inherited deadline?).
        self._pending: dict[int, tuple[Any, str, float, bool]] = {}
        self._deadlines: list[tuple[float, int]] = []  # heap of (deadline, id)
        # Calls on the connection's usual timeout (the first one a call used with nothing
        # inherited; a node's call_timeout): their deadlines come in order, so a FIFO holds
        # them exactly, at a fraction of a heap push. Answered ones are dropped from its head.
        # Shared and empty until the first such call: a deque is 760 bytes, and most connections
        # a server accepts never call back.
        self._fifo: deque[tuple[float, int]] = _NO_FIFO
        self._fifo_timeout: float | None = None
        self._fifo_budget = 0  # the budget (ms) every call on _fifo_timeout carries
        self._cancel_grace = cancel_grace
        self._cancels: list[tuple[float, int]] = []  # timed-out calls to cancel at the peer, by when
        self._next_id = 1
        self.last_received = clock()
        self._ping_sent: float | None = None
        self._ping_token = 0
        # Message flow, as sender: the peer's window (None: it asked for none; False: not known yet).
        self._send_window: tuple[int, int] | None | bool = False
        self._unacked = 0
        self._unacked_bytes = 0
        # ... and as receiver.
        self._unread = 0
        self._unread_bytes = 0
        self._consumed = 0
        self._consumed_bytes = 0
        self._credit_due = False
        self._blocked = False
        self._peer_max_frame = DEFAULT_MAX_FRAME
        if self._codec is not None:
            self._queue(self._encode(to_wire(Hello(PROTOCOL_VERSION, name, self._hello_info()))))

    # -- state ------------------------------------------------------------------------------------

    @property
    def codec(self) -> str | None:
        return self._codec.name if self._codec is not None else None

    @property
    def pending_calls(self) -> dict[int, tuple[Any, str, float, bool]]:
        """The calls made and not answered yet: id -> (handle, func, timeout, inherited). A stream
        that matches replies itself (the C reactor) pops the answered ones from this very dict, as
        `receive_frames` would; it stays the same dict for the connection's life."""
        return self._pending

    @property
    def peer_max_frame(self) -> int:
        """The largest frame body the peer accepts (known once its hello arrived)."""
        return self._peer_max_frame

    @property
    def is_open(self) -> bool:
        """The peer's hello has arrived and the connection has not ended."""
        return self.peer is not None and not self._ended

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def pending_count(self) -> int:
        """Calls made on this connection still waiting for an answer."""
        return len(self._pending)

    @property
    def partial_bytes(self) -> int:
        """Bytes of a frame begun and not yet complete (`receive_data` streams only)."""
        return self._decoder.buffered if self._decoder is not None else 0

    @property
    def unacked(self) -> tuple[int, int]:
        """Messages (count, bytes) we sent that the peer has not yet consumed."""
        return self._unacked, self._unacked_bytes

    @property
    def unread(self) -> tuple[int, int]:
        """Messages (count, bytes) the peer sent that our side has not yet consumed."""
        return self._unread, self._unread_bytes

    def set_origin(self, origin: str) -> None:
        """Name the peer's address in errors (an accepting side may learn it late)."""
        self.origin = origin
        if self._decoder is not None:
            self._decoder.origin = origin

    # -- input ------------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from a byte stream, in any chunking."""
        if self._ended:
            return
        self.last_received = self._clock()
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = FrameDecoder(self.max_frame, self.origin)
        try:
            bodies = decoder.feed(data)
        except ProtocolError as exc:
            self._end(exc, str(exc))
            return
        if bodies:
            self._receive(bodies)

    def receive_frames(self, bodies: list[bytes]) -> None:
        """Whole frame bodies from a stream that cuts frames itself (and enforced ``max_frame``)."""
        if self._ended or not bodies:
            return
        self.last_received = self._clock()
        self._receive(bodies)

    def receive_frame(self, body: bytes) -> None:
        """One frame body (a WebSocket message)."""
        if len(body) > self.max_frame:
            exc = FrameTooLarge(len(body), self.max_frame, self.origin or None)
            self._end(exc, str(exc))
            return
        self.receive_frames([body])

    def connection_lost(self, exc: BaseException | None) -> None:
        """The stream ended (``exc`` None: closed cleanly). Every pending call fails with
        `PeerLost`; a `Closed` event follows unless the connection had already ended."""
        why = str(exc) if exc is not None and str(exc) else "connection closed"
        self._end(exc, why)

    def events_received(self) -> list[Event]:
        """What happened since the last call, in order."""
        events = self._events
        if not events:
            return []
        self._events = []
        return events

    # -- output -----------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Frames to write (length-prefixed, back to back); empty when there is nothing."""
        bodies = self.frames_to_send()
        return join_frames(bodies) if bodies else b""

    def frames_to_send(self) -> list[bytes]:
        """Frame bodies to write, for streams that frame messages themselves."""
        if self._credit_due:
            self._return_credit()
        out = self._out
        if not out:
            return []
        if self._holding:
            return self._hello_only()
        self._out = []
        self.bytes_sent += self.queued_bytes
        self.queued_bytes = 0
        return out

    def call(
        self,
        func: str,
        args: Sequence[Any],
        handle: Any,
        *,
        timeout: float | None,
        deadline: float | None = None,
        request: int | None = None,
        trace: str | None = None,
    ) -> int:
        """File a call of ``func(*args)`` and queue it; returns its id.

        It fails (through a `Failed` event with ``handle``) after ``timeout`` seconds, or at
        ``deadline`` (on this connection's clock; an inherited deadline) if that is sooner; the
        remaining budget travels with the call. ``request`` is the request id it carries, ``trace``
        the W3C traceparent (metadata ``"t"``). Raises at once, sending nothing: `CallTimeout` when
        the deadline has already passed, `PeerLost` once the connection ended, `EncodeError`, and
        `MessageTooLarge` above the peer's frame limit.
        """
        if self._ended:
            raise self._lost(func)
        if (
            timeout == self._fifo_timeout and timeout is not None and deadline is None
            and trace is None
        ):
            return self._call_in_order(func, args, handle, timeout, request)
        due = None
        inherited = False
        shown = timeout if timeout is not None else 0.0
        meta: dict[str, Any] | None
        in_order = False
        if deadline is None and timeout is not None and timeout > 0:
            # The common case (a timeout, nothing inherited): the budget is the timeout itself.
            due = self._clock() + timeout
            budget_ms = int(timeout * 1000)  # rounded down
            if self._fifo_timeout is None:  # the first: it becomes the usual timeout
                self._fifo, self._fifo_timeout, self._fifo_budget = deque(), timeout, budget_ms
            in_order = timeout == self._fifo_timeout
            meta = {"d": budget_ms, "r": request} if request is not None else {"d": budget_ms}
        elif timeout is not None or deadline is not None:
            now = self._clock()
            due = now + timeout if timeout is not None else None
            if deadline is not None and (due is None or deadline < due):
                due = deadline
                inherited = True
                shown = max(deadline - now, 0.0)
            assert due is not None
            budget = due - now
            if budget <= 0:
                raise CallTimeout(self.peer, func, shown, inherited=inherited)
            meta = {"d": int(budget * 1000)}  # rounded down
            if request is not None:
                meta["r"] = request
        else:
            meta = None if request is None else {"r": request}
        if trace is not None:
            if meta is None:
                meta = {}
            meta["t"] = trace
        call_id = self._next_id
        body = self._encode((KIND_CALL, call_id, func, args, meta))
        if len(body) > self._peer_max_frame:
            raise self._call_too_large(func, len(body))
        self._next_id = call_id + 1
        pending = self._pending
        pending[call_id] = (handle, func, shown, inherited)
        if in_order:
            fifo = self._fifo
            fifo.append((due, call_id))  # type: ignore[arg-type]
            if len(fifo) > 2 * len(pending) + _HEAP_SLACK:
                self._prune_fifo()
        elif due is not None:
            heap = self._deadlines
            heapq.heappush(heap, (due, call_id))
            if len(heap) > 2 * len(pending) + _HEAP_SLACK:
                self._deadlines = heap = [entry for entry in heap if entry[1] in pending]
                heapq.heapify(heap)
        self._queue(body)
        return call_id

    def _call_in_order(
        self, func: str, args: Sequence[Any], handle: Any, timeout: float, request: int | None
    ) -> int:
        """`call` on the connection's usual timeout with nothing inherited and no trace: the same
        frame and bookkeeping as the general path, with the budget known and the deadline on the
        FIFO (this is nearly every call, so each step here is a measurable part of a call)."""
        call_id = self._next_id
        budget = self._fifo_budget
        body = self._encode(
            (KIND_CALL, call_id, func, args, {"d": budget, "r": request} if request is not None
             else {"d": budget})
        )
        size = len(body)
        if size > self._peer_max_frame:
            raise self._call_too_large(func, size)
        self._next_id = call_id + 1
        pending = self._pending
        pending[call_id] = (handle, func, timeout, False)
        fifo = self._fifo
        fifo.append((self._clock() + timeout, call_id))
        if len(fifo) > 2 * len(pending) + _HEAP_SLACK:
            self._prune_fifo()
        self._out.append(body)
        self.queued_bytes += size
        return call_id

    def _call_too_large(self, func: str, size: int) -> MessageTooLarge:
        return MessageTooLarge(call_site("rpc_call", self.peer, func), size, self._peer_max_frame)

    def _prune_fifo(self) -> None:
        """Let go of answered calls' deadlines once they outnumber the pending ones."""
        pending = self._pending
        self._fifo = deque(entry for entry in self._fifo if entry[1] in pending)

    def cancel(self, call_id: int) -> Any:
        """The caller gave up on ``call_id``: forget it and tell the peer (which cancels the running
        function). Returns its handle, or None if it was no longer pending."""
        entry = self._pending.pop(call_id, None)
        if entry is None:
            return None
        if not self._ended:
            self._queue(self._encode(to_wire(Cancel(call_id))))
        return entry[0]

    def reply(self, call_id: int, result: Any) -> EncodeError | None:
        """Answer call ``call_id``. A result the codec cannot carry, or one over the caller's frame
        limit, is answered with an error envelope instead; that problem is returned (to be logged)."""
        if self._ended:
            return None
        try:
            body = self._encode((KIND_REPLY, call_id, result))
        except EncodeError as exc:
            self.reply_error(call_id, ERROR_REMOTE, "EncodeError", f"cannot send the result: {exc}")
            return exc
        if len(body) > self._peer_max_frame:
            too_large = MessageTooLarge(f"reply to {self.peer!r}", len(body), self._peer_max_frame)
            self.reply_error(
                call_id,
                ERROR_TOO_LARGE,
                "MessageTooLarge",
                f"result of {len(body)} bytes exceeds the caller's frame limit of "
                f"{self._peer_max_frame} bytes",
            )
            return too_large
        self._queue(body)
        return None

    def reply_error(
        self, call_id: int, code: str, type_name: str, message: str, traceback: str = ""
    ) -> None:
        """Answer call ``call_id`` with an error (``code``: one of the ``ERROR_*`` codes)."""
        if self._ended:
            return
        body = self._encode(to_wire(Error(call_id, code, type_name, message, traceback)))
        # Text too big for the caller's frame limit is cut (the traceback first) rather than sent:
        # an oversize frame would cost the caller the whole connection.
        excess = len(body) - self._peer_max_frame
        if excess > 0 and traceback:
            traceback = traceback[min(excess + 8, len(traceback)):]
            body = self._encode(to_wire(Error(call_id, code, type_name, message, traceback)))
            excess = len(body) - self._peer_max_frame
        if excess > 0:
            message = message[: max(len(message) - excess - 8, 0)]
            body = self._encode(to_wire(Error(call_id, code, type_name, message, traceback)))
        self._queue(body)

    def send_msg(self, payload: Any, *, control: bool = False) -> bool:
        """Queue a message; False (nothing queued) when the peer's window is full or not known yet:
        try again after a `WindowOpened` event. ``control`` messages (registry notices) bypass the
        window. Raises `PeerLost` once ended, `EncodeError`, `MessageTooLarge`."""
        if self._ended:
            raise self._lost(None)
        body = self._encode((KIND_MSG, payload))
        size = len(body)
        if size > self._peer_max_frame:
            raise MessageTooLarge(call_site("send_msg", self.peer), size, self._peer_max_frame)
        window = self._send_window
        if window is not None:
            if window is False and not control:
                return False
            # Control messages are counted too (the receiver returns credit for them) but never
            # wait; the receiver tolerates that overshoot (see `_message`).
            if not control and (
                self._unacked >= window[0]  # type: ignore[index]
                or (self._unacked_bytes and self._unacked_bytes + size > window[1])  # type: ignore[index]
            ):
                return False
            self._unacked += 1
            self._unacked_bytes += size
        self._queue(body)
        return True

    def message_consumed(self, size: int) -> None:
        """Our application took a message of ``size`` bytes (`MessageReceived.size`) out of the
        mailbox. Credit goes back to the sender with the next `data_to_send`, in batches."""
        self._unread -= 1
        self._unread_bytes -= size
        self._consumed += 1
        self._consumed_bytes += size
        count, limit = self.window
        if (
            self._unread <= 0
            or self._consumed >= count >> 1
            or self._consumed_bytes >= limit >> 1
        ):
            self._credit_due = True
        if self._blocked and self._unread <= count >> 1 and self._unread_bytes <= limit >> 1:
            self._blocked = False

    # -- time -------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `handle_timeout` has work: the earliest call deadline or liveness check."""
        heap = self._deadlines
        pending = self._pending
        while heap and heap[0][1] not in pending:
            heapq.heappop(heap)
        due = heap[0][0] if heap else None
        fifo = self._fifo
        while fifo and fifo[0][1] not in pending:
            fifo.popleft()
        if fifo and (due is None or fifo[0][0] < due):
            due = fifo[0][0]
        if self._cancels and (due is None or self._cancels[0][0] < due):
            due = self._cancels[0][0]
        by = self._handshake_by
        if self.peer is None and by is not None and not self._ended and (due is None or by < due):
            due = by
        if self.ping_interval is not None and (pending or self._unacked) and not self._ended:
            sent = self._ping_sent
            if sent is None or self.last_received > sent:
                check = self.last_received + self.ping_interval
            else:
                check = sent + self.ping_timeout
            if due is None or check < due:
                due = check
        return due

    def handle_timeout(self) -> None:
        """Expire the calls whose deadline has passed (`Failed` with `CallTimeout`, and a cancel to
        the peer), ping a silent peer, and give up on one that does not answer (`Closed`)."""
        if self._ended:
            return
        now = self._clock()
        if self.peer is None and self._handshake_by is not None and now >= self._handshake_by:
            assert self._handshake_timeout is not None
            exc = HandshakeTimeout(self._handshake_timeout, self.origin or None)
            self._end(exc, str(exc))
            return
        heap = self._deadlines
        fifo = self._fifo
        pending = self._pending
        # Both queues of deadlines, merged in deadline order.
        while (heap and heap[0][0] <= now) or (fifo and fifo[0][0] <= now):
            if fifo and fifo[0][0] <= now and not (heap and heap[0] < fifo[0]):
                _, call_id = fifo.popleft()
            else:
                _, call_id = heapq.heappop(heap)
            entry = pending.pop(call_id, None)
            if entry is not None:
                handle, func, shown, inherited = entry
                self._events.append(
                    Failed(handle, CallTimeout(self.peer, func, shown, inherited=inherited))
                )
                heapq.heappush(self._cancels, (now + self._cancel_grace, call_id))
        cancels = self._cancels
        while cancels and cancels[0][0] <= now:
            self._queue(self._encode(to_wire(Cancel(heapq.heappop(cancels)[1]))))
        if self.ping_interval is None or not (pending or self._unacked):
            self._ping_sent = None
            return
        sent = self._ping_sent
        if sent is not None and self.last_received > sent:
            sent = self._ping_sent = None  # heard from the peer since: it is alive
        # Compared as next_deadline() computes them, so a timer at that instant finds work.
        if sent is None:
            if now >= self.last_received + self.ping_interval:
                self._ping_token += 1
                self._ping_sent = now
                self._queue(self._encode(to_wire(Ping(self._ping_token))))
        elif now >= sent + self.ping_timeout:
            why = (
                f"no answer to ping within {self.ping_timeout:g}s "
                f"(nothing heard for {now - self.last_received:.1f}s)"
            )
            self._end(PeerLost(self.peer, why, address=self.origin or None), why)

    # -- internals --------------------------------------------------------------------------------

    def _encode(self, item: Any) -> bytes:
        codec = self._codec
        if codec is None:
            raise RuntimeError("nothing can be sent before the peer's hello has arrived")
        return codec.encode(item)

    def _hello_info(self) -> dict[str, Any]:
        return {**(self._info or {}), "max_frame": self.max_frame, "window": list(self.window),
                **self._auth.hello_info()}

    def _hello_only(self) -> list[bytes]:
        """While output is held (the peer has not proved itself yet): our hello alone, once."""
        if self._hello_out:
            return []
        self._hello_out = True
        hello = self._out.pop(0)
        self.queued_bytes -= len(hello)
        return [hello]

    def _queue(self, body: bytes) -> None:
        self._out.append(body)
        self.queued_bytes += len(body)

    def _lost(self, func: str | None) -> PeerLost:
        why = self.end_reason or "connection closed"
        if func is None:
            return PeerLost(self.peer, why, operation="send_msg", address=self.origin or None)
        return PeerLost(self.peer, why, function=func, address=self.origin or None)

    def _end(self, exc: BaseException | None, why: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.end_reason = why
        pending = self._pending.copy()
        self._pending.clear()  # the same dict: a stream matching replies holds it
        events = self._events
        address = self.origin or None
        for handle, func, _, _ in pending.values():
            events.append(Failed(handle, PeerLost(self.peer, why, function=func, address=address)))
        self._deadlines = []
        self._fifo.clear()
        self._cancels = []
        self._out = [self._parting] if self._parting is not None else []
        self.queued_bytes = len(self._parting) if self._parting is not None else 0
        self._credit_due = False
        events.append(Closed(exc))

    def _receive(self, bodies: list[bytes]) -> None:
        self.bytes_received += sum(map(len, bodies))
        try:
            if self.peer is None:
                bodies = self._handshake(bodies)
            assert self._codec is not None
            decode = self._codec.decode
            events = self._events
            pending = self._pending
            for body in bodies:
                item = decode(body)
                # A reply, the commonest frame of a caller, goes straight to its event: no
                # envelope object in between (from_wire's checks, inlined).
                if (
                    type(item) is list
                    and len(item) == 3
                    and item[0] == KIND_REPLY
                    and type(item[1]) is int
                    and type(item[0]) is int
                ):
                    entry = pending.pop(item[1], None)
                    if entry is not None:
                        events.append(_new(Answered, (entry[0], item[2])))
                    continue
                env = from_wire(item)
                kind = type(env)
                if kind is Reply:
                    entry = pending.pop(env.id, None)  # type: ignore[union-attr]
                    if entry is not None:
                        events.append(_new(Answered, (entry[0], env.result)))  # type: ignore[union-attr]
                elif kind is Call or kind is Cancel:
                    events.append(env)  # type: ignore[arg-type]
                elif kind is Msg:
                    self._message(env.payload, len(body))  # type: ignore[union-attr]
                else:
                    self._control(env)
                if self._ended:
                    return
        except (ProtocolError, AuthError) as exc:
            self._end(exc, str(exc))

    def _control(self, env: Envelope) -> None:
        kind = type(env)
        if kind is Error:
            assert isinstance(env, Error)
            self._error_received(env)
        elif kind is Credit:
            assert isinstance(env, Credit)
            self._unacked = max(self._unacked - env.messages, 0)
            self._unacked_bytes = max(self._unacked_bytes - env.size, 0)
            self._events.append(_WINDOW_OPENED)
        elif kind is Ping:
            assert isinstance(env, Ping)
            self._queue(self._encode(to_wire(Pong(env.token))))
        elif kind is Pong:
            assert isinstance(env, Pong)
            sent = self._ping_sent
            if sent is not None and env.token == self._ping_token:
                self._ping_sent = None
                self._events.append(PongReceived(self._clock() - sent))
        elif kind is Hello:
            raise ProtocolError(f"second hello from {self._describe()}", origin=self.origin or None)

    def _handshake(self, bodies: list[bytes]) -> list[bytes]:
        if self._awaiting_proof is not None:
            return self._proof_received(bodies)
        first = bodies[0]
        where = f" from {self.origin}" if self.origin else ""
        if len(first) > self.max_hello:
            raise ProtocolError(
                f"hello of {len(first)} bytes{where} exceeds the limit of {self.max_hello} bytes",
                origin=self.origin or None,
            )
        if self._codec is None:
            self._codec = sniff_codec(first)
        hello = self._decode_hello(first, "hello")
        if hello.version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"peer {hello.name!r}{where} speaks protocol version {hello.version}, "
                f"this side speaks {PROTOCOL_VERSION}",
                origin=self.origin or None,
            )
        try:
            self._auth.verify(hello)
        except AuthError as exc:
            exc.address = exc.address or self.origin or None
            self._refuse(exc)
            raise
        if self.accepting:
            self._queue(self._encode(to_wire(
                Hello(PROTOCOL_VERSION, self.name, self._hello_info()))))
            if getattr(self._auth, "needs_proof", False):
                self._awaiting_proof = hello
                return self._proof_received(bodies[1:])
        elif self._holding:
            proof = self._auth.proof()  # type: ignore[attr-defined]
            if proof is not None:
                self._out.insert(0, self._encode(to_wire(Hello(PROTOCOL_VERSION, self.name, proof))))
            self._holding = False
        self._opened(hello)
        return bodies[1:]

    def _refuse(self, exc: AuthError) -> None:
        """Tell a connecting peer why its hello was refused: it would otherwise only see the
        connection close, and retry. The frame outlives `_end` as the connection's last output."""
        if self.accepting:
            self._parting = self._encode(to_wire(Error(0, ERROR_AUTH, "AuthError", exc.reason, "")))

    def _decode_hello(self, body: bytes, what: str) -> Hello:
        assert self._codec is not None
        hello = from_wire(self._codec.decode(body))
        if isinstance(hello, Error) and hello.code == ERROR_AUTH and not self.accepting:
            raise AuthError(f"refused by the peer: {hello.message}", address=self.origin or None)
        if not isinstance(hello, Hello):
            where = f" from {self.origin}" if self.origin else ""
            raise ProtocolError(f"expected {what}{where}, got {type(hello).__name__.lower()}",
                                origin=self.origin or None)
        return hello

    def _proof_received(self, bodies: list[bytes]) -> list[bytes]:
        """The accepting side's wait for the connecting side's second hello (its proof)."""
        if not bodies:
            return bodies
        hello = self._awaiting_proof
        assert hello is not None
        if len(bodies[0]) > self.max_hello:
            raise AuthError(f"proof of {len(bodies[0])} bytes exceeds the limit of "
                            f"{self.max_hello} bytes", peer=hello.name, address=self.origin or None)
        proof = self._decode_hello(bodies[0], "the proof of the shared secret")
        try:
            self._auth.verify_proof(proof)  # type: ignore[attr-defined]
        except AuthError as exc:
            exc.address = exc.address or self.origin or None
            raise
        self._awaiting_proof = None
        self._opened(hello)
        return bodies[1:]

    @property
    def peer_identity(self) -> str | None:
        """Who the authenticator says the peer proved to be (None: it proved nothing)."""
        identity = getattr(self._auth, "identity", None)
        return identity if isinstance(identity, str) else None

    def _opened(self, hello: Hello) -> None:
        info = hello.info
        limit = info.get("max_frame")
        if type(limit) is int and limit > 0:
            self._peer_max_frame = limit
        window = info.get("window")
        if (
            isinstance(window, list)
            and len(window) == 2
            and all(type(w) is int and w > 0 for w in window)
        ):
            self._send_window = (window[0], window[1])
        else:
            self._send_window = None  # the peer asks for no flow control (a minimal client)
        self.peer = hello.name
        self.peer_info = info
        self._events.append(Opened(hello.name, info))
        self._events.append(_WINDOW_OPENED)

    def _message(self, payload: Any, size: int) -> None:
        self._unread += 1
        self._unread_bytes += size
        count, limit = self.window
        # Twice the window: control messages (registry notices) may overshoot it; a sender that
        # ignores credit altogether soon passes that.
        if self._unread > 2 * count or self._unread_bytes > 2 * limit + self.max_frame:
            raise ProtocolError(
                f"{self._describe()} sent {self._unread} messages ({self._unread_bytes} bytes) "
                f"past its window of {count} messages / {limit} bytes",
                origin=self.origin or None,
            )
        self._events.append(_new(MessageReceived, (payload, size)))
        if not self._blocked and (self._unread >= count or self._unread_bytes >= limit):
            self._blocked = True
            self._events.append(SenderBlocked(self._unread, self._unread_bytes))

    def _return_credit(self) -> None:
        self._credit_due = False
        if self._consumed and not self._ended:
            self._queue(self._encode(to_wire(Credit(self._consumed, self._consumed_bytes))))
            self._consumed = self._consumed_bytes = 0

    def _error_received(self, err: Error) -> None:
        entry = self._pending.pop(err.id, None)
        if entry is None:
            return
        handle, func, _, _ = entry
        exc: BaseException
        if err.code == ERROR_NO_SUCH_FUNCTION:
            found = _PROVIDES.search(err.message)
            provided = None
            if found is not None:
                listed = found.group(1)
                provided = [] if listed == "none" else listed.split(", ")
            exc = NoSuchFunction(self.peer, func, provided)
        elif err.code == ERROR_BUSY:
            exc = Busy(self.peer, func, err.message)
        elif err.code == ERROR_FORBIDDEN:
            exc = Forbidden(err.message, peer=self.peer, function=func)
        else:
            exc = RemoteError(self.peer, func, err.type, err.message, err.traceback)
        self._events.append(Failed(handle, exc))

    def _describe(self) -> str:
        if self.peer:
            return f"{self.peer!r} ({self.origin})" if self.origin else repr(self.peer)
        return self.origin or "(unknown peer)"
