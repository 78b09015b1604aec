"""`NativeStreamSocket`: the `StreamSocket` contract on the C reactor of ``_native.c`` (Linux).

The C side moves packets: one epoll set per event loop (nested in the loop through
``add_reader``), framing, the receive queue, the output buffer (a fiber's sends are joined into
one ``send`` per connection per loop turn; a session's writes go out at once), and the handler
"fiber": while a `listen` handler waits in ``recv()`` on its own
connection, an arriving packet resumes it straight from the reactor, with no future, callback or
task step in between. This module decides everything else: addresses, errors, end of stream,
closing with a linger, the host task that runs a fiber's other awaits, and the accepting and
connecting of sockets.

`available()` says whether the extension is built, enabled (``NAMEWIRE_NATIVE=0`` turns it
off) and usable on the running loop; without it `listen`/`connect` use the pure-asyncio
`StreamSocket`.
"""

from __future__ import annotations

import asyncio
import asyncio.proactor_events
import contextvars
import errno
import logging
import os
import socket
import sys
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import (
    ConnectionReset,
    FrameTooLarge,
    ProtocolError,
    TransportError,
)
from ..wire import oversize_message
from ._address import Address, sockaddr_url
from ._schemes import bind_sockets, connect_socket
from ._stream import SocketState, StreamSocket, broken_stream, stream_names
from ._streams import WRITE_HIGH_WATER, Stream, StreamHandler

_native: Any
try:
    from . import _native
except ImportError:  # not built (no compiler, not Linux): the pure-asyncio sockets serve instead
    _native = None

__all__ = [
    "NativeFrameStream",
    "NativeServer",
    "NativeStreamSocket",
    "available",
    "native_connect",
]

log = logging.getLogger("namewire.transport")

# Output buffered above this makes send() wait until it falls to a quarter of it (asyncio's
# defaults for its transports).
HIGH_WATER = 64 * 1024
_CLOSE_LINGER = 10.0
# How long NativeFrameStream.close() lets queued output drain before it drops it.
_STREAM_LINGER = 1.0
# How many connections one readiness callback accepts before letting the loop run again.
_ACCEPT_BATCH = 128
# After EMFILE/ENFILE, accepting pauses this long instead of spinning on a full fd table.
_ACCEPT_PAUSE = 0.5


def loop_carries_reactor(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` can host the reactor, which it joins through ``add_reader`` on one file
    descriptor: selector loops and uvloop can, a proactor loop (Windows) cannot."""
    if isinstance(loop, asyncio.proactor_events.BaseProactorEventLoop):
        return False
    return type(loop).add_reader is not asyncio.AbstractEventLoop.add_reader


def available() -> bool:
    """True when stream sockets made now run on the C reactor.

    ``NAMEWIRE_NATIVE`` decides: unset (or ``auto``), whenever the extension is built and the
    running loop can host it; ``0``, never; ``1``, always, and RuntimeError saying why not when
    it cannot (so a deployment that counts on the reactor never falls back unnoticed).
    """
    mode = os.environ.get("NAMEWIRE_NATIVE", "auto")
    if mode == "0":
        return False
    why = _why_not_native()
    if why is not None and mode == "1":
        raise RuntimeError(f"NAMEWIRE_NATIVE=1 but the C reactor cannot be used: {why}")
    return why is None


def _why_not_native() -> str | None:
    if _native is None:
        return "the extension is not built (see namewire --version)"
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if not loop_carries_reactor(loop):
        return f"the running loop ({type(loop).__name__}) has no add_reader"
    return None


# loop -> a weak reference to its reactor. The reactor holds its loop, so a strong value would
# keep the key alive for good; what keeps a reactor alive is the loop's reader callback and its
# connections, and once a closed loop lets go of them, loop, reactor and connections are garbage.
_reactors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.ref[Any]] = (
    weakref.WeakKeyDictionary()
)


def _reactor_of(loop: asyncio.AbstractEventLoop) -> Any:
    ref = _reactors.get(loop)
    return ref() if ref is not None else None


_TaskHook = Callable[[asyncio.AbstractEventLoop, "asyncio.Task[Any]"], None]


def task_hooks() -> tuple[_TaskHook, _TaskHook]:
    """asyncio's ``_enter_task`` and ``_leave_task``: the one use of private asyncio API.

    A fiber step runs outside its host task's own step, so the reactor makes the host the current
    task around it, as a task's step does (``asyncio.current_task()``, and so ``asyncio.timeout``
    and cancellation, rely on it). tests/transport/test_native_defects.py checks that they still
    exist and still do that, so a Python release that changes them fails there, loudly.
    """
    enter = getattr(asyncio.tasks, "_enter_task", None)
    leave = getattr(asyncio.tasks, "_leave_task", None)
    if enter is None or leave is None:
        raise RuntimeError(
            "namewire's C reactor needs asyncio.tasks._enter_task and _leave_task, which this "
            f"Python ({sys.version.split()[0]}) does not have; run with NAMEWIRE_NATIVE=0 to use "
            "the pure-asyncio sockets"
        )
    return enter, leave


def _reactor(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's reactor, made (and registered with ``add_reader``) on first use."""
    reactor = _reactor_of(loop)
    if reactor is None:
        enter, leave = task_hooks()
        reactor = _native.Reactor(loop=loop, enter_task=enter, leave_task=leave)
        loop.add_reader(reactor.fileno(), reactor.poll)
        _reactors[loop] = weakref.ref(reactor)
    return reactor


def _release_reactor(loop: asyncio.AbstractEventLoop, reactor: Any) -> None:
    """Close the loop's reactor once its last connection is gone (no fd outlives its sockets)."""
    current = _reactor_of(loop)
    if reactor.conns or current is None or current is not reactor:
        return
    del _reactors[loop]
    reactor.flush()
    if not loop.is_closed():
        loop.remove_reader(reactor.fileno())
    reactor.close()


_Base: type = _native.Conn if _native is not None else object


class NativeStreamSocket(SocketState, _Base):  # type: ignore[misc]
    """A `StreamSocket` whose per-packet work is done in C; made by `listen` and `connect`.

    ``recv`` and ``send`` are the C methods themselves. Registered as a virtual subclass of
    `StreamSocket`, which documents the contract.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        framed: bool = True,
        max_frame: int,
        queue_limit: int,
    ) -> None:
        if max_frame <= 0 or max_frame > 2**32 - 1:
            raise ValueError(f"max_frame must be in 1..{2**32 - 1}, not {max_frame}")
        if queue_limit <= 0:
            raise ValueError(f"queue_limit must be positive, not {queue_limit}")
        loop = asyncio.get_running_loop()
        # Everything that can fail comes before the C base registers the socket with epoll:
        # once registered, the epoll set holds a reference that only detach() gives back.
        self.local_address, self.peer_address, self._where = stream_names(
            sock, sock.getsockname(), sock.getpeername()
        )
        self._loop = loop
        self._max_frame = max_frame
        self._sock = sock
        self._closing = False
        self._send_exc: TransportError | None = None
        self._lost: asyncio.Future[None] = loop.create_future()
        self._drain_waiter: asyncio.Future[None] | None = None
        self._wake: asyncio.Future[tuple[int, Any]] | None = None
        self._outcome: tuple[int, Any] | None = None
        self._fiber_context: contextvars.Context | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._reactor = reactor = _reactor(loop)
        try:
            super().__init__(reactor, sock.fileno(), framed, max_frame, queue_limit, HIGH_WATER)
        except BaseException:
            _release_reactor(loop, reactor)
            raise

    # --- the public face (recv and send are inherited from C) ----------------------------------

    async def close(self, *, linger: float = _CLOSE_LINGER) -> None:
        """Close the connection: buffered writes are flushed first, for up to ``linger`` seconds,
        then dropped. A task waiting in ``recv()`` gets None. Idempotent."""
        self._start_close()
        if self._lost.done():
            return
        if self.expect_drain(0):
            self._teardown()
        elif self._linger is None:
            # The output drains in the background, even if this call is cancelled; whichever
            # comes first, drained, lost or the end of the linger, ends the connection.
            if self._drain_waiter is None or self._drain_waiter.done():
                self._drain_waiter = self._loop.create_future()
            self._drain_waiter.add_done_callback(self._teardown_after)
            self._linger = self._loop.call_later(linger, self._teardown)
        await asyncio.shield(self._lost)

    def abort(self) -> None:
        """Close the connection at once, dropping buffered writes; a waiting ``recv()`` gets None."""
        self._start_close()
        self._teardown()

    # --- called by the C side ------------------------------------------------------------------

    def _event(self, kind: int, arg: Any) -> None:
        if kind == _native.EV_FIBER:
            wake = self._wake
            if wake is not None and not wake.done():
                wake.set_result(arg)
            else:
                self._outcome = arg
        elif kind == _native.EV_DRAINED:
            waiter = self._drain_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == _native.EV_EOF:
            if arg:
                self.finish(broken_stream("connection closed", self._where, self.peer_address, arg))
            else:
                # Our write side stays open: the handler may still answer.
                self.finish(None)
        elif kind == _native.EV_OVERSIZE:
            exc = ProtocolError(oversize_message(arg, self._max_frame, self._where))
            self.finish(exc)
            self._lose(
                ConnectionReset(f"connection to {self._where} was closed: {exc}", self.peer_address)
            )
        elif kind in (_native.EV_RECV_ERROR, _native.EV_SEND_ERROR):
            reason = (
                "connection reset"
                if arg in (errno.ECONNRESET, errno.EPIPE)
                else f"connection lost ({os.strerror(arg)})"
            )
            if not self._closing:
                self.finish(broken_stream(reason, self._where, self.peer_address, self.buffered))
            self._lose(ConnectionReset(f"connection to {self._where} is closed", self.peer_address))

    async def _drain(self) -> None:
        """send() over the high-water mark: wait until the output has drained to the low mark."""
        if self._drain_waiter is None or self._drain_waiter.done():
            self._drain_waiter = self._loop.create_future()
        await self._drain_waiter

    # --- the fiber's host task -----------------------------------------------------------------

    async def _host(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` (a `listen` handler) as this connection's fiber, inside the current task.

        The task only steps in when the fiber does something other than wait in ``recv()``:
        another await, finishing, or the task being cancelled.
        """
        loop = self._loop
        self.start_fiber(coro, asyncio.current_task(), self._fiber_context)
        value: Any = None
        exc: BaseException | None = None
        try:
            while True:
                kind, obj = self.drive(value, exc)
                value = exc = None
                if kind == _native.STEP_PARKED:
                    self._wake = wake = _Wake(self, loop=loop)
                    try:
                        kind, obj = await wake
                    except asyncio.CancelledError as cancel:
                        # The fiber may have moved on before the cancellation reached us.
                        outcome: tuple[int, Any] | None
                        if wake.done() and not wake.cancelled():
                            outcome = wake.result()
                        else:
                            outcome, self._outcome = self._outcome, None
                        if outcome is None:
                            # Still in recv() (unparked by _Wake.cancel): recv() raises it.
                            self.unpark()
                            exc = cancel
                            continue
                        kind, obj = outcome
                        # Cancel what the fiber now waits for, as a task would; if that is too
                        # late (already done), the cancellation goes to the fiber itself.
                        if kind == _native.STEP_YIELD and _is_future(obj) and not obj.cancel():
                            exc = cancel
                            continue
                    finally:
                        self._wake = None
                if kind == _native.STEP_RETURN:
                    return obj
                if kind == _native.STEP_RAISE:
                    raise obj
                exc = await _stand_in(obj)
        finally:
            self.end_fiber()

    # --- internals -------------------------------------------------------------------------------

    def _start_close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._set_send_error(
            TransportError(f"socket to {self._where} is closed", self.peer_address)
        )
        self.finish(None)

    def _set_send_error(self, exc: TransportError) -> None:
        """From now on send() raises ``exc`` (the first one set stays, as in the C side)."""
        if self._send_exc is None:
            self._send_exc = exc
        self.set_send_error(exc)

    def _lose(self, send_exc: TransportError) -> None:
        """The connection is gone (reset, write failure, protocol error): drop it now."""
        self._set_send_error(send_exc)
        self._teardown()

    def _teardown_after(self, _: object) -> None:
        self._teardown()

    def _teardown(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        # A send() waiting for drain would wait forever: it gets the send error, as the pure
        # socket's WriteFlow.close gives it (abort, an expired linger, a lost connection).
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                self._send_exc
                or ConnectionReset(f"connection to {self._where} is closed", self.peer_address)
            )
            waiter.exception()  # nobody may be waiting any more: do not log it as unretrieved
        if not self.attached:
            return
        self.detach()
        self._sock.close()
        if not self._lost.done():
            self._lost.set_result(None)
        _release_reactor(self._loop, self._reactor)


class NativeFrameStream(Stream, _Base):  # type: ignore[misc]
    """A `Stream` on the C reactor (session mode): frames are cut in C, and the frames of one read
    reach ``handler.frames_received`` as one list, called straight from the reactor.

    Built from a connected non-blocking socket, inside the running loop; nothing is read before
    `start`. Writes are framed bytes (``takes_frames`` False), sent at once (the session joins
    what one loop turn writes, and decides when to write early). ``stream_lost`` is called exactly once, from a loop callback of its
    own (never from inside a call the handler made): None after a clean end between frames,
    `close()` or `abort()`; `ConnectionReset` for a reset, an error or an end in the middle of a
    frame; `FrameTooLarge` for a frame over ``max_frame``. Writes after `close()`/`abort()` or
    after the stream was lost are dropped, as an asyncio transport drops them.
    """

    cuts_frames = True
    takes_frames = False

    def __init__(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        # Everything that can fail comes before the C base registers the socket with epoll.
        self.local_address, self.peer_address, self.where = stream_names(
            sock, sock.getsockname(), sock.getpeername()
        )
        self._loop = loop
        self._sock = sock
        self._handler: StreamHandler | None = None
        self._read_paused = False  # by pause_reading(), before or after start()
        self._writing_paused = False
        self._closing = False  # close() or abort() was called, or the stream was lost
        self._lost = False  # stream_lost is scheduled (or not needed: never started)
        self._linger: asyncio.TimerHandle | None = None
        self._reactor = reactor = _reactor(loop)
        try:
            super().__init__(reactor, sock.fileno(), True, _MAX_BODY, sys.maxsize, WRITE_HIGH_WATER)
        except BaseException:
            _release_reactor(loop, reactor)
            raise
        _conn_pause_reading(self)  # until start()

    # --- Stream --------------------------------------------------------------------------------

    def start(self, handler: StreamHandler, *, max_frame: int) -> None:
        if self._handler is not None or self._closing:
            raise RuntimeError(f"stream to {self.where} is already started or closed")
        self.max_frame = max_frame
        self._handler = handler
        self.set_receiver(handler.frames_received)
        if not self._read_paused:
            _conn_resume_reading(self)

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        if _conn_write(self, data) and not self._writing_paused:
            self._writing_paused = True
            if self._handler is not None:
                self._handler.writing_paused()

    def write_buffer_size(self) -> int:
        return int(self.out_buffered)

    def pause_reading(self) -> None:
        self._read_paused = True
        _conn_pause_reading(self)

    def resume_reading(self) -> None:
        self._read_paused = False
        if self._handler is not None:
            _conn_resume_reading(self)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.finish(None)  # reads no more
        if self.expect_drain(0):
            self._lose(None)
        else:
            # EV_DRAINED (with _closing set) ends it when the output is out, or the linger does.
            self._linger = self._loop.call_later(_STREAM_LINGER, self._linger_expired)

    def _linger_expired(self) -> None:
        # Output was dropped: the handler hears of it, a clean close would hide the loss.
        unsent = int(self.out_buffered)
        self._lose(
            ConnectionReset(
                f"closed with {unsent} bytes still unsent to {self.where} after waiting "
                f"{_STREAM_LINGER:g}s for the peer to read them",
                self.peer_address,
            )
        )

    def abort(self) -> None:
        self._closing = True
        self._lose(None)

    # --- called by the C side ------------------------------------------------------------------

    def _event(self, kind: int, arg: Any) -> None:
        if kind == _native.EV_DRAINED:
            if self._closing:
                self._lose(None)
            elif self._writing_paused:
                self._writing_paused = False
                if self._handler is not None:
                    self._handler.writing_resumed()
        elif kind == _native.EV_EOF:
            broken = broken_stream("connection closed", self.where, self.peer_address, arg)
            self._lose(broken if arg else None)
        elif kind == _native.EV_OVERSIZE:
            self._lose(FrameTooLarge(arg, self.max_frame, self.where))
        elif kind in (_native.EV_RECV_ERROR, _native.EV_SEND_ERROR):
            reason = (
                "connection reset"
                if arg in (errno.ECONNRESET, errno.EPIPE)
                else f"connection lost ({os.strerror(arg)})"
            )
            self._lose(broken_stream(reason, self.where, self.peer_address, self.buffered))

    # --- internals -------------------------------------------------------------------------------

    def _lose(self, exc: BaseException | None) -> None:
        """Drop the connection now; ``stream_lost(exc)`` follows from a callback of its own."""
        self._closing = True
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self.attached:
            self.detach()  # also forgets the receiver
            self._sock.close()
            _release_reactor(self._loop, self._reactor)
        if self._lost:
            return
        self._lost = True
        handler, self._handler = self._handler, None
        if handler is not None:
            self._loop.call_soon(handler.stream_lost, exc)


if _native is not None:
    _conn_write = _native.Conn.write
    _conn_pause_reading = _native.Conn.pause_reading
    _conn_resume_reading = _native.Conn.resume_reading
_MAX_BODY = 2**32 - 1


class _Wake(asyncio.Future[tuple[int, Any]]):
    """What the host task waits on while its fiber waits in recv().

    Cancelling it (the task is being cancelled) takes the fiber out of recv() at once: a packet
    arriving before the task's next step is then queued rather than resuming a fiber whose
    cancellation is already decided, which would deliver that cancellation to a later await.
    """

    def __init__(self, sock: NativeStreamSocket, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._sock = sock

    def cancel(self, msg: Any = None) -> bool:
        if not self.done():
            self._sock.unpark()
        return super().cancel(msg)


def _is_future(obj: Any) -> bool:
    return getattr(obj, "_asyncio_future_blocking", None) is not None


async def _stand_in(obj: Any) -> BaseException | None:
    """Wait, in the host task, for what the fiber yielded, as asyncio's Task would; returns the
    exception to throw into the fiber (None: resume it, and it reads the outcome itself)."""
    if obj is None:  # a bare yield: asyncio.sleep(0)
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError as cancel:
            return cancel
        return None
    if not _is_future(obj):
        return RuntimeError(f"Task got bad yield: {obj!r}")
    obj._asyncio_future_blocking = False
    try:
        await obj
    except asyncio.CancelledError as cancel:
        if not obj.cancelled():
            return cancel  # the host was cancelled after the future had completed
    except BaseException:  # noqa: BLE001, S110 - the fiber reads the future's outcome itself
        pass
    return None


# --- accepting and connecting ------------------------------------------------------------------


class NativeServer:
    """Listening sockets that accept into `NativeStreamSocket`s; the part of `asyncio.Server`
    that `Listener` uses (``sockets``, ``close``, ``wait_closed``).

    With ``max_connections``, accepting pauses while that many accepted connections are open
    (``make`` counts one; `released` gives it back), logged once per episode: newcomers wait in
    the kernel's backlog instead of taking memory and descriptors.
    """

    def __init__(
        self,
        sockets: list[socket.socket],
        make: Callable[[socket.socket], None],
        where: str,
        max_connections: int | None = None,
    ) -> None:
        self.sockets = sockets
        self._make = make
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._starved = False  # accept() ran out of descriptors and has not succeeded since
        self._where = where
        self._max = max_connections
        self.open_connections = 0
        self._full = False  # paused at max_connections
        self._warned = False  # the episode is logged; it ends below three quarters of the limit
        for sock in sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def released(self) -> None:
        """An accepted connection closed: accepting resumes if it had paused at the limit."""
        self.open_connections -= 1
        limit = self._max
        if limit is None:
            return
        if self._warned and self.open_connections <= limit * 3 // 4:
            self._warned = False
            log.warning("%d connections open on %s: below the limit again", self.open_connections,
                        self._where)
        if self._full and not self._closed and self.open_connections < limit:
            self._full = False
            for sock in self.sockets:
                self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            if self._max is not None and self.open_connections >= self._max:
                self._full = True
                if not self._warned:
                    self._warned = True
                    log.warning("%d connections open on %s, the limit (max_connections): new "
                                "ones wait until some close", self.open_connections, self._where)
                for sock in self.sockets:
                    self._loop.remove_reader(sock.fileno())
                return
            try:
                sock, _ = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Once per episode: the retries every _ACCEPT_PAUSE would flood the log.
                    if not self._starved:
                        log.error(
                            "cannot accept on %s: %s; new connections wait until it can",
                            self._where,
                            exc.strerror or exc,
                        )
                    self._starved = True
                    self._loop.remove_reader(listening.fileno())
                    self._loop.call_later(_ACCEPT_PAUSE, self._resume_accepting, listening)
                    return
                raise
            if self._starved:
                self._starved = False
                log.warning("accepting on %s again", self._where)
            try:
                sock.setblocking(False)
                if sock.family != socket.AF_UNIX:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._make(sock)
                self.open_connections += 1
            except OSError:
                # The peer left before we got to it (getpeername fails): nothing to serve.
                sock.close()
            except Exception:
                # Anything else would escape into the loop's reader callback once per newcomer
                # and leak its socket; listen() checks its arguments, so this is a bug: say so.
                sock.close()
                log.exception("cannot serve a connection accepted on %s", self._where)

    def _resume_accepting(self, listening: socket.socket) -> None:
        if not self._closed and not self._full:
            self._loop.add_reader(listening.fileno(), self._accept, listening)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            if not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        return None


def native_sessions() -> bool:
    """True when node sessions run on the C reactor too (`NativeFrameStream`)."""
    return available()


def native_frame_stream(sock: socket.socket) -> NativeFrameStream:
    """A `Stream` on the C reactor for the connected socket ``sock`` (see `native_sessions`)."""
    return NativeFrameStream(sock)


async def native_listen(
    address: Address,
    make: Callable[[socket.socket], None],
    *,
    backlog: int,
) -> NativeServer:
    """Listen on a stream address of the scheme table; each accepted socket goes to ``make``."""
    sockets = await bind_sockets(address, backlog)
    return NativeServer(sockets, make, sockaddr_url(address.scheme, sockets[0].getsockname()))


async def native_connect(
    address: Address, timeout: float | None, **options: Any
) -> NativeStreamSocket:
    """Connect to a stream address of the scheme table; errors name the address."""
    sock = await connect_socket(address, timeout)
    try:
        return NativeStreamSocket(sock, **options)
    except BaseException:
        sock.close()
        raise


if _native is not None:
    StreamSocket.register(NativeStreamSocket)
    # What recv() and send() return: full coroutines (send, throw, close, __await__), so that
    # asyncio.create_task, ensure_future and gather take them as they take StreamSocket's.
    Coroutine.register(_native.RecvOp)
    Coroutine.register(_native.Done)
