"""`WorkerChannel`: a `Channel` whose two ends live in two processes (or two threads' loops).

Each link is one socketpair carrying one namewire `Session`: the protocol core's messages and
message credit do the work. A ``put`` is a message; the receiving side keeps it in the channel's
buffer until a ``get`` takes it, and only then returns credit. The receiver's window is the
channel's ``maxsize`` (and ``max_bytes``), so at most that many values are in flight or unread per
direction, and a producer faster than its consumer waits in ``put``: memory is bounded on both
sides. ``close`` is a call named ``close``, so it arrives after every value sent before it.

A channel is duplex: what one end puts, the other end gets. The parent keeps its `WorkerChannel`
across restarts of the worker (each `fork` gives it a new link); the worker gets its own end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import (
    ChannelBroken,
    ChannelClosed,
    EncodeError,
    MessageTooLarge,
    PeerLost,
    ValueCannotCross,
)
from ..runtime import Channel
from ..transport import Session, session_over
from ..wire import Call

__all__ = ["ChannelEnd", "WorkerChannel", "WorkerChannelStatistics"]

T = TypeVar("T")

log = logging.getLogger("namewire.workers")

_names = itertools.count(1)
_CLOSE = "close"
# How long a closing side waits for the other side to acknowledge the close before dropping the link.
CLOSE_TIMEOUT = 2.0
# A broken link waits at most this long for the worker's exit status to put into the error.
EXIT_STATUS_WAIT = 2.0
_ENCODABLE = (type(None), bool, int, float, str, bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class WorkerChannelStatistics:
    buffered: int
    in_flight: int
    in_flight_bytes: int
    maxsize: int
    max_bytes: int
    linked: bool


class ChannelEnd:
    """The far end of a link, on its way to a worker (pickled with its socket by multiprocessing,
    or handed to a thread as is). The worker turns it into its `WorkerChannel`."""

    def __init__(self, sock: socket.socket, maxsize: int, max_bytes: int, name: str) -> None:
        self.sock = sock
        self.maxsize = maxsize
        self._capacity = maxsize  # maxsize, typed as never None
        self.max_bytes = max_bytes
        self.name = name

    async def open(self, peer_gone: Callable[[], Awaitable[ChannelBroken]]) -> WorkerChannel[Any]:
        channel: WorkerChannel[Any] = WorkerChannel(self.maxsize, max_bytes=self.max_bytes,
                                                    name=self.name)
        await channel._link(self.sock, peer_gone=peer_gone)
        return channel


class WorkerChannel(Channel[T]):
    """A bounded channel to a worker started by `namewire.fork`: the `Channel` API across processes.

    Create it in the parent and pass it to `fork` as an argument; the worker's target receives its
    own end. ``put``, ``get``, ``put_nowait``, ``get_nowait``, ``close``, ``async for`` and `select`
    behave as on a `Channel` of ``maxsize``, plus:

    - at most ``maxsize`` values (and about ``max_bytes`` encoded bytes) travel or wait unread per
      direction: a ``put`` past that waits until the other side takes values (back-pressure);
    - a value msgpack cannot carry raises `ValueCannotCross` naming its type; nothing is sent and
      the channel carries on;
    - when the worker ends without closing the channel (crash, ``kill -9``, exit), pending and
      later operations raise `WorkerExited` with the exit code or signal, after the values that
      had already arrived;
    - when the target of the worker returns, its channels are closed for it: ``async for`` in the
      parent ends.

    Values are delivered in order and at most once: values in flight when a worker dies are lost.
    """

    def __init__(self, maxsize: int = 64, *, max_bytes: int = 4 * 1024 * 1024,
                 name: str | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"WorkerChannel maxsize must be >= 1, not {maxsize}")
        if max_bytes < 1:
            raise ValueError(f"WorkerChannel max_bytes must be >= 1, not {max_bytes}")
        super().__init__(None)  # the buffer is bounded by the window the other side respects
        self.maxsize = maxsize
        self._capacity = maxsize  # maxsize, typed as never None
        self.max_bytes = max_bytes
        self.name = name or f"channel-{next(_names)}"
        self._sizes: deque[int] = deque()
        self._stale = 0  # leading buffered values from an earlier link (no credit to return)
        self._session: Session | None = None
        self._broken: ChannelBroken | None = None
        self._breaking: asyncio.Task[None] | None = None
        self._peer_gone: Callable[[], Awaitable[ChannelBroken]] | None = None
        self._peer_alive: Callable[[], bool] = lambda: True

    def __repr__(self) -> str:
        state = "broken" if self._broken else "closed" if self._closed else "open"
        return f"<WorkerChannel {self.name!r} {state} {len(self._items)}/{self.maxsize}>"

    def __reduce__(self) -> Any:
        raise TypeError(
            f"{self!r} can only be passed to a worker as an argument of namewire.fork()"
        )

    # -- linking (fork does this) ----------------------------------------------------------------

    @property
    def linked(self) -> bool:
        """True while the channel has a live link to a worker."""
        return self._session is not None and not self._session.is_closed

    def far_end(self) -> tuple[socket.socket, ChannelEnd]:
        """A new socketpair: our socket, and the end for the worker. `fork` links us afterwards."""
        if self.linked:
            raise ValueError(f"{self!r} is already linked to a running worker; "
                             "a channel joins the parent to one worker")
        ours, theirs = socket.socketpair()
        return ours, ChannelEnd(theirs, self._capacity, self.max_bytes, self.name)

    async def settle(self) -> None:
        """Wait until a link whose far end has ended is seen as ended (its EOF and its error), so
        that a restarted worker can be given the channel again. Bounded by ``EXIT_STATUS_WAIT``."""
        session = self._session
        if session is None or self._peer_alive():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(EXIT_STATUS_WAIT):
                await session.wait_closed()
                if self._breaking is not None:
                    await asyncio.shield(self._breaking)

    async def _link(self, sock: socket.socket, *, peer_gone: Callable[[], Awaitable[ChannelBroken]],
                    peer_alive: Callable[[], bool] = lambda: True) -> None:
        """Run a new session over ``sock``; values still buffered from a dead link stay readable."""
        if self._breaking is not None:
            await asyncio.shield(self._breaking)  # let the old link's waiters have its error first
        self._stale = len(self._items)
        self._peer_alive = peer_alive
        self._closed = False
        self._broken = None
        self._breaking = None
        self._peer_gone = peer_gone
        session = _ChannelSession(
            self.name,
            self,
            codec="msgpack",  # both ends speak first: a socketpair has no caller to wait for
            window=(self._capacity, self.max_bytes),
            ping_interval=None,  # the other end's death is seen as EOF on the socketpair
            origin=f"worker channel {self.name!r}",
        )
        self._session = session
        await session_over(sock, session)

    def statistics(self) -> WorkerChannelStatistics:
        """What the channel holds now: values arrived and unread here (``buffered``), values sent
        and not yet taken by the other side (``in_flight``, ``in_flight_bytes``)."""
        session = self._session
        unacked = session.connection.unacked if session is not None else (0, 0)
        return WorkerChannelStatistics(len(self._items), unacked[0], unacked[1], self._capacity,
                                       self.max_bytes, self.linked)

    # -- Channel API -------------------------------------------------------------------------------

    def full(self) -> bool:
        """True if a ``put`` would wait now (the other side has ``maxsize`` values unread)."""
        session = self._session
        return session is not None and session.connection.unacked[0] >= self._capacity

    async def put(self, value: T) -> None:
        """Send ``value`` to the other end, waiting while it holds ``maxsize`` unread values.

        Raises `ChannelClosed` once closed (either end), `ValueCannotCross` for a value msgpack
        cannot carry, `WorkerExited`/`ChannelBroken` once the other end went away.
        """
        session = self._usable()
        try:
            # No wait for the stream to drain: the window already bounds what is in flight.
            if not session.send_msg_nowait(value):
                await session.send_msg(value)
        except PeerLost:
            if self._closed and self._broken is None and self._breaking is None:
                raise ChannelClosed(f"put() on closed channel {self.name!r}") from None
            raise await self._broken_error() from None
        except MessageTooLarge:
            raise
        except EncodeError:
            raise _cannot_cross(self.name, value) from None

    def put_nowait(self, value: T) -> None:
        """Send ``value`` without waiting; `asyncio.QueueFull` if the other side's window is full."""
        session = self._usable()
        try:
            sent = session.send_msg_nowait(value)
        except PeerLost:
            raise self._broken or ChannelBroken(self.name, "the other end went away") from None
        except MessageTooLarge:
            raise
        except EncodeError:
            raise _cannot_cross(self.name, value) from None
        if not sent:
            raise asyncio.QueueFull

    def get_nowait(self) -> T:
        """Take the oldest value that arrived; `asyncio.QueueEmpty` if none, `ChannelClosed` once
        closed and drained, `WorkerExited`/`ChannelBroken` once the other end went away and
        everything it sent was taken."""
        if not self._items:
            if self._broken is not None:
                raise self._broken
            if self._closed and self._breaking is None:
                raise ChannelClosed(f"get() on closed and drained channel {self.name!r}")
            raise asyncio.QueueEmpty
        value = self._items.popleft()
        size = self._sizes.popleft()
        if self._stale:
            self._stale -= 1
        elif self._session is not None:
            self._session.message_consumed(size)
        return value

    async def __anext__(self) -> T:
        if self._items:  # the common case under load: one coroutine per value, not two
            return self.get_nowait()
        try:
            return await self.get()
        except ChannelClosed:
            raise StopAsyncIteration from None

    async def get(self) -> T:
        """Take the oldest value, waiting for one; raises as `get_nowait` once nothing can come."""
        while not self._items and (not self._closed or self._breaking is not None):
            if self._breaking is not None:
                await asyncio.shield(self._breaking)
                continue
            waiter: asyncio.Future[Channel[Any]] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._getters:
                    self._getters.remove(waiter)
                if waiter.done() and not waiter.cancelled():
                    self._wake_getter()  # pass the wake-up on: the value stays for someone else
                raise
        return self.get_nowait()

    def close(self) -> None:
        """Close both directions: later ``put`` on either end raises `ChannelClosed`, waiting ones
        too (their values not sent); both ends can still take what already arrived. Idempotent."""
        if self._closed:
            return
        self._mark_closed()
        session = self._session
        if session is not None and not session.is_closed:
            asyncio.get_running_loop().create_task(self._send_close(session),
                                                   name=f"close {self.name}")

    async def aclose(self) -> None:
        """`close`, then wait (up to 2 s) until the other end has seen it."""
        session = self._session
        if self._closed or session is None or session.is_closed:
            self.close()
            return
        self._mark_closed()
        await self._send_close(session)

    def drop(self) -> None:
        """End the link at once, without the close handshake (the other end sees it broken)."""
        session = self._session
        if session is not None and not session.is_closed:
            session.abort()

    # -- internals ---------------------------------------------------------------------------------

    def _usable(self) -> Session:
        if self._closed and self._broken is None and self._breaking is None:
            raise ChannelClosed(f"put() on closed channel {self.name!r}")
        if self._broken is not None:
            raise self._broken
        session = self._session
        if session is None:
            raise RuntimeError(f"{self!r} is not linked: pass it to namewire.fork() first")
        return session

    def _mark_closed(self) -> None:
        Channel.close(self)
        if self._session is not None:
            self._session.fail_senders(ChannelClosed(f"put() on closed channel {self.name!r}"))

    async def _send_close(self, session: Session) -> None:
        try:
            await session.call(_CLOSE, (), timeout=CLOSE_TIMEOUT)
        except (TimeoutError, PeerLost):
            pass  # the other side is gone or stuck: the link ends either way
        finally:
            session.close()

    async def _broken_error(self) -> ChannelBroken:
        if self._broken is None:
            if self._breaking is None:
                self._breaking = asyncio.get_running_loop().create_task(self._break())
            await asyncio.shield(self._breaking)
        assert self._broken is not None
        return self._broken

    async def _break(self) -> None:
        error: ChannelBroken
        try:
            assert self._peer_gone is not None
            error = await asyncio.wait_for(self._peer_gone(), EXIT_STATUS_WAIT)
        except TimeoutError:
            error = ChannelBroken(self.name, "the other end went away (no exit status within "
                                  f"{EXIT_STATUS_WAIT:g} s)")
        self._broken = error
        self._breaking = None
        Channel.close(self)  # wakes the getters, which now find the error

    # -- SessionHandler ----------------------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        pass

    def message_received(self, session: Session, payload: Any, size: int) -> None:
        self._items.append(payload)
        self._sizes.append(size)
        if self._getters:  # under load the reader is busy, not waiting: skip the call
            self._wake_getter()

    def call_received(self, session: Session, call: Call) -> None:
        if call.func == _CLOSE:
            if not self._closed:
                self._mark_closed()
            session.reply(call.id, None)
            return
        session.reply_error(call.id, "no-such-function", "NoSuchFunction",
                            f"worker channel {self.name!r} takes no calls but close")

    def cancel_received(self, session: Session, call_id: int) -> None:
        pass

    def session_closed(self, session: Session, reason: BaseException | None) -> None:
        if session is not self._session:
            return
        if self._closed and self._breaking is None and self._broken is None:
            return  # closed by one end: the normal end of the link
        if reason is not None:
            log.debug("worker channel %r: link lost: %s", self.name, reason)
        if self._breaking is None and self._broken is None:
            self._breaking = asyncio.get_running_loop().create_task(self._break())
            # Getters waiting now re-check and wait for the error; waiting putters get PeerLost.
            while self._getters:
                waiter = self._getters.popleft()
                if not waiter.done():
                    waiter.set_result(self)


class _ChannelSession(Session):
    """A session whose full window is the normal state of a bounded channel, not worth a warning."""

    __slots__ = ()

    def _sender_blocked(self, event: Any) -> None:
        pass


def _cannot_cross(channel: str, value: Any) -> ValueCannotCross:
    type_name, path = _first_unencodable(value)
    return ValueCannotCross(channel, type_name or type(value).__name__, path)


def _first_unencodable(value: Any, path: str = "", depth: int = 0) -> tuple[str, str]:
    """The type msgpack refuses in ``value`` and where it sits (only run after a failed encode)."""
    if depth > 64:
        return "a structure nested too deeply", path
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _ENCODABLE):
                return type(key).__name__, f"{path} (a key)"
            found = _first_unencodable(item, f"{path}[{key!r}]", depth + 1)
            if found[0]:
                return found
        return "", path
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_unencodable(item, f"{path}[{index}]", depth + 1)
            if found[0]:
                return found
        return "", path
    if isinstance(value, _ENCODABLE):
        if isinstance(value, int) and not -(2**63) <= value < 2**64:
            return "int (beyond 64 bits)", path
        return "", path
    return type(value).__name__, path
