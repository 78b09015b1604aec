"""`Session`: one namewire connection carrying messages and calls both ways.

A session wraps the sans-I/O `WireConnection` in an asyncio protocol: hello handshake, then envelopes.
It owns the calls it made (pending futures by id) and hands what the peer sends (messages, calls,
cancels) to a `SessionHandler`. It knows the peer's node name from the hello, but nothing of how names
are resolved; that is the node's business.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol, cast

from ..errors import (
    CallTimeout,
    EncodeError,
    NamewireError,
    NoSuchFunction,
    PeerLost,
    ProtocolError,
    RemoteError,
)
from ..wire import (
    DEFAULT_MAX_FRAME,
    ERROR_NO_SUCH_FUNCTION,
    ERROR_REMOTE,
    Call,
    Cancel,
    Error,
    Hello,
    Msg,
    Ping,
    Pong,
    Reply,
    WireConnection,
)
from ._deadlines import DeadlineWheel
from ._flow import WriteFlow

__all__ = ["Session", "SessionHandler"]

log = logging.getLogger("namewire.transport")

# Write buffer above which `send_msg`/`call` wait for drain.
WRITE_HIGH_WATER = 256 * 1024
# Write buffer above which we also stop reading from the peer: a peer that floods us with calls but
# does not read the replies must not grow our memory without bound. Far above the high-water mark so
# two peers that both write hard do not stop reading each other at the same time.
READ_STOP_WRITE_BUFFER = 8 * 1024 * 1024
# Queued frames past this size are written at once instead of at the end of the loop turn.
FLUSH_BYTES = 8192


class SessionHandler(Protocol):
    """What a session reports to its owner. Called from protocol callbacks: never block."""

    def session_opened(self, session: Session) -> None: ...

    def message_received(self, session: Session, payload: Any) -> None: ...

    def call_received(self, session: Session, call: Call) -> None: ...

    def cancel_received(self, session: Session, call_id: int) -> None: ...

    def session_closed(self, session: Session, reason: BaseException | None) -> None: ...


class Session(asyncio.Protocol):
    """A namewire connection. ``codec`` None means this side accepted and adopts the peer's codec.

    Until the peer's hello arrives, ``peer_name`` is None; `wait_open` waits for it. Calls and messages
    may be written before that: they are pipelined behind our hello.
    """

    __slots__ = (
        "_accepting",
        "_close_reason",
        "_closed",
        "_closing",
        "_deadlines",
        "_flow",
        "_flush_scheduled",
        "_handler",
        "_loop",
        "_lost",
        "_next_id",
        "_opened",
        "_outbox",
        "_outbox_bytes",
        "_pending",
        "_reading_held",
        "_receiving",
        "_transport",
        "_wire",
        "origin",
        "peer_info",
        "peer_name",
        "running",
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
    ) -> None:
        self._wire = WireConnection(
            local_name, codec=codec, info=info, max_frame=max_frame, origin=origin
        )
        self._accepting = codec is None
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        self._flow = WriteFlow(self._loop)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, tuple[asyncio.Future[Any], str]] = {}
        self._next_id = 1
        self._deadlines = DeadlineWheel(self._loop, self._pending, self._expire)
        # Closing starts with abort() or the loss of the connection; `_lost` once it is gone. The
        # futures exist only while somebody waits (memory per idle connection matters).
        self._closing = False
        self._lost = False
        self._close_reason: BaseException | None = None
        self._opened: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[BaseException | None] | None = None
        self._reading_held: set[str] | None = None
        # Frames written in one loop turn leave in one transport.write (see `_send_frame`).
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._flush_scheduled = False
        self._receiving = False
        self.origin = origin
        self.peer_name: str | None = None
        self.peer_info: dict[str, Any] = {}
        # Calls from the peer that run as tasks (async functions), by id, so a cancel can reach them.
        self.running: dict[int, asyncio.Task[Any]] = {}

    # -- asyncio protocol callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, though they implement it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if not self.origin:
            self.origin = _peer_url(transport.get_extra_info("peername"))
            self._wire.set_origin(self.origin)
        if not self._accepting:
            transport.write(self._wire.hello())

    def data_received(self, data: bytes) -> None:
        try:
            envelopes = self._wire.receive_data(data)
        except ProtocolError as exc:
            log.warning("closing connection %s: %s", self._describe(), exc)
            self.abort(exc)
            return
        pending = self._pending
        handler = self._handler
        # Replies written while handling this read go out together when it is done.
        self._receiving = True
        try:
            self._dispatch(envelopes, pending, handler)
        finally:
            self._receiving = False
            self._flush()

    def _dispatch(
        self,
        envelopes: list[Any],
        pending: dict[int, tuple[asyncio.Future[Any], str]],
        handler: SessionHandler,
    ) -> None:
        for env in envelopes:
            kind = type(env)
            if kind is Call:
                handler.call_received(self, env)
            elif kind is Reply:
                entry = pending.pop(env.id, None)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(env.result)
            elif kind is Msg:
                handler.message_received(self, env.payload)
            elif kind is Error:
                self._call_failed(env)
            elif kind is Cancel:
                handler.cancel_received(self, env.id)
            elif kind is Hello:
                self._hello_received(env)
            elif kind is Ping:
                self._write(Pong(env.token))
            if self._closing:
                return

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        reason: BaseException | None = self._close_reason if self._closing else exc
        self._closing = self._lost = True
        self._close_reason = reason
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(reason)
        why = f"{reason}" if reason is not None else "connection closed"
        lost = PeerLost(self.peer_name, why, address=self.origin)
        self._flow.close(lost)
        self._deadlines.close()
        self._outbox.clear()
        pending, self._pending = self._pending, {}
        for fut, func in pending.values():
            if not fut.done():
                fut.set_exception(PeerLost(self.peer_name, why, function=func, address=self.origin))
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(lost)
            self._opened.exception()  # retrieved: nobody may be waiting for it
        for task in self.running.values():
            task.cancel()
        self._handler.session_closed(self, reason)

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()
        self.release_reading("write")

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
        return len(self._pending)

    async def wait_open(self) -> None:
        """Wait for the peer's hello; raise `PeerLost` if the connection ends first."""
        if self.peer_name is not None:
            return
        if self._lost:
            raise PeerLost(None, "lost before its hello", address=self.origin)
        if self._opened is None:
            self._opened = self._loop.create_future()
        await asyncio.shield(self._opened)

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection is gone; return why (None for a clean close)."""
        if self._lost:
            return self._close_reason
        if self._closed is None:
            self._closed = self._loop.create_future()
        return await asyncio.shield(self._closed)

    async def call(self, func: str, args: Sequence[Any], timeout: float | None) -> Any:
        """Call ``func(*args)`` on the peer and return its result.

        Raises `NoSuchFunction`, `RemoteError`, `PeerLost`, `CallTimeout`, `EncodeError`. Cancelling the
        awaiting task sends a cancel to the peer.
        """
        if self._closing:
            raise PeerLost(self.peer_name, "connection closed", function=func, address=self.origin)
        call_id = self._next_id
        self._next_id = call_id + 1
        frame = self._wire.encode_call(call_id, func, args)
        fut = self._loop.create_future()
        self._pending[call_id] = (fut, func)
        self._send_frame(frame)
        timer = self._deadlines.add(call_id, timeout) if timeout is not None else None
        try:
            if self._flow.paused:
                await self._flow.drain()
            return await fut
        except asyncio.CancelledError:
            if self._pending.pop(call_id, None) is not None and not self._closing:
                self._write(Cancel(call_id))
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def send_msg(self, payload: Any) -> None:
        """Write a message; wait only while the write buffer is above its high-water mark."""
        if self._closing:
            raise PeerLost(
                self.peer_name, "connection closed", operation="send_msg", address=self.origin
            )
        self._send_frame(self._wire.encode_msg(payload))
        if self._flow.paused:
            await self._flow.drain()

    def push(self, payload: Any) -> None:
        """Write a message without waiting (small notices); dropped if the session is closed."""
        if not self._closing:
            self._send_frame(self._wire.encode_msg(payload))

    def reply(self, call_id: int, result: Any) -> None:
        try:
            frame = self._wire.encode_reply(call_id, result)
        except EncodeError as exc:
            self.reply_error(call_id, ERROR_REMOTE, "EncodeError", f"cannot send the result: {exc}")
            return
        self._send_frame(frame)

    def reply_error(
        self, call_id: int, code: str, type_name: str, message: str, traceback: str = ""
    ) -> None:
        self._write(Error(call_id, code, type_name, message, traceback))

    def hold_reading(self, reason: str) -> None:
        """Stop reading from the peer until `release_reading` with the same reason."""
        if not self._reading_held and self._transport is not None and not self._closing:
            self._transport.pause_reading()
        if self._reading_held is None:
            self._reading_held = set()
        self._reading_held.add(reason)

    def release_reading(self, reason: str) -> None:
        if self._reading_held and reason in self._reading_held:
            self._reading_held.discard(reason)
            if not self._reading_held and self._transport is not None and not self._closing:
                self._transport.resume_reading()

    def close(self) -> None:
        """Close after flushing what is written."""
        self._flush()
        if self._transport is not None:
            self._transport.close()

    def abort(self, reason: BaseException | None = None) -> None:
        """Close at once, dropping unwritten data; ``reason`` is what pending calls are told."""
        if not self._closing:
            self._closing = True
            self._close_reason = reason
        if self._transport is not None:
            self._transport.abort()

    # -- internals ---------------------------------------------------------------------------------

    def _hello_received(self, hello: Hello) -> None:
        if self.peer_name is not None:
            self.abort(ProtocolError(f"second hello from {self._describe()}"))
            return
        if self._accepting:
            self._send_frame(self._wire.hello())
        self.peer_name = hello.name
        self.peer_info = hello.info
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)
        self._handler.session_opened(self)

    def _call_failed(self, err: Error) -> None:
        entry = self._pending.pop(err.id, None)
        if entry is None or entry[0].done():
            return
        fut, func = entry
        exc: NamewireError
        if err.code == ERROR_NO_SUCH_FUNCTION:
            exc = NoSuchFunction(self.peer_name, func)
        else:
            exc = RemoteError(self.peer_name, func, err.type, err.message, err.traceback)
        fut.set_exception(exc)

    def _expire(self, call_id: int, timeout: float) -> None:
        entry = self._pending.pop(call_id, None)
        if entry is None:
            return
        fut, func = entry
        if not fut.done():
            fut.set_exception(
                CallTimeout(self.peer_name, func, timeout)
            )
        if not self._closing:
            self._write(Cancel(call_id))

    def _write(self, envelope: Any) -> None:
        self._send_frame(self._wire.encode(envelope))

    def _send_frame(self, frame: bytes) -> None:
        """Queue ``frame``; the queue is written at the end of this loop turn in one call.

        A transport.write costs about as much as building a small frame, so writing each frame on
        its own would double the cost of a call. The queue is flushed early past FLUSH_BYTES, so a
        task that sends in a loop without yielding still has bounded memory and feels back-pressure.
        """
        if self._closing:
            return
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        if self._outbox_bytes >= FLUSH_BYTES:
            self._flush()
        elif not self._flush_scheduled and not self._receiving:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox = self._outbox
        transport = self._transport
        if not outbox or transport is None:
            return
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        outbox.clear()
        self._outbox_bytes = 0
        if self._closing:
            return
        transport.write(data)
        if self._flow.paused and transport.get_write_buffer_size() > READ_STOP_WRITE_BUFFER:
            self.hold_reading("write")

    def _describe(self) -> str:
        if self.peer_name:
            return f"{self.peer_name!r} ({self.origin})" if self.origin else repr(self.peer_name)
        return self.origin or "(unknown peer)"


def _peer_url(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host = f"[{peername[0]}]" if ":" in str(peername[0]) else peername[0]
        return f"tcp://{host}:{peername[1]}"
    return f"unix://{peername}" if peername else "unix://(unnamed)"
