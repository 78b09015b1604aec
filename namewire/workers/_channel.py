"""`WorkerChannel`: a `Channel` whose two ends live in two processes (or two threads' loops).

Each link is one socketpair carrying one namewire `Session`: the protocol core's messages and
message credit do the work. Values travel in batches (`_batches`): the values put in one loop turn
leave as one message, whose credit the receiving side returns once a ``get`` has taken its last
value. At most ``maxsize`` values (and about ``max_bytes`` bytes) are accepted and not yet taken
per direction, so a producer faster than its consumer waits in ``put``: memory is bounded on both
sides. ``close`` is a call named ``close``, so it arrives after every value put before it.

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
    ProtocolError,
    ValueCannotCross,
)
from ..runtime import Channel
from ..transport import Session, session_over
from ..wire import DEFAULT_MAX_FRAME, Call
from ._batches import (
    BATCH_OVERHEAD,
    BATCHES_IN_FLIGHT,
    FULL_BATCH,
    Outbox,
    decode_batch,
)

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
    unsent: int  # of in_flight: still here, waiting for the link (its window, or the worker's start)


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

    - at most ``maxsize`` values (and about ``max_bytes`` encoded bytes) are put and not yet taken
      by the other side per direction: a ``put`` past that waits until the other side takes
      values (back-pressure). Values travel in batches (those put in one loop turn share a
      message), and a batch's room comes back once its last value is taken;
    - a value msgpack cannot carry raises `ValueCannotCross` naming its type, at the ``put``;
      nothing is sent and the channel carries on;
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
        super().__init__(None)  # the buffer is bounded by the outbox of the other side
        self.maxsize = maxsize
        self._capacity = maxsize  # maxsize, typed as never None
        self.max_bytes = max_bytes
        self.name = name or f"channel-{next(_names)}"
        self._outbox = Outbox(maxsize, max_bytes, f"put() on channel {self.name!r}")
        self._send_scheduled = False
        # A batch left or its credit went back: the next put or get lets the loop run once, so
        # that it is written and the other side's batches and credit are read (see `_yield`).
        self._turn_due = False
        # Batches that arrived on this link, oldest first: [values not yet taken, message bytes].
        self._inbox: deque[list[int]] = deque()
        self._stale = 0  # leading buffered values from an earlier link (no credit to return)
        self._session: _ChannelSession | None = None
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
        self._inbox.clear()
        self._outbox.clear()  # what the dead link carried is lost with it
        self._peer_alive = peer_alive
        self._closed = False
        self._broken = None
        self._breaking = None
        self._peer_gone = peer_gone
        session = _ChannelSession(
            self,
            codec="msgpack",  # both ends speak first: a socketpair has no caller to wait for
            # The core's window paces batches; the bound in values and bytes is the outbox's, and
            # the bytes allow for each batch's envelope.
            window=(min(self._capacity, BATCHES_IN_FLIGHT),
                    self.max_bytes + (BATCHES_IN_FLIGHT + 1) * BATCH_OVERHEAD),
            ping_interval=None,  # the other end's death is seen as EOF on the socketpair
            origin=f"worker channel {self.name!r}",
        )
        self._session = session
        await session_over(sock, session)

    def statistics(self) -> WorkerChannelStatistics:
        """What the channel holds now: values arrived and unread here (``buffered``), values put
        here and not yet taken by the other side (``in_flight``, ``in_flight_bytes``: waiting to
        leave, travelling, or unread there), and of those the ones not handed to the link yet
        (``unsent``: the link's window is full, or the worker has not said hello yet)."""
        self._credited()
        outbox = self._outbox
        return WorkerChannelStatistics(len(self._items), outbox.held, outbox.held_bytes,
                                       self._capacity, self.max_bytes, self.linked,
                                       len(outbox.waiting))

    # -- Channel API -------------------------------------------------------------------------------

    def full(self) -> bool:
        """True if a ``put`` would wait now (the other side has ``maxsize`` values to take)."""
        self._credited()
        return self._outbox.held >= self._capacity

    async def put(self, value: T) -> None:
        """Send ``value`` to the other end, waiting while ``maxsize`` values put here are not yet
        taken there.

        Raises `ChannelClosed` once closed (either end), `ValueCannotCross` for a value msgpack
        cannot carry, `MessageTooLarge` for one over the frame limit, `WorkerExited` /
        `ChannelBroken` once the other end went away.
        """
        if self._turn_due:
            await self._yield()
        session = self._session
        if session is None or self._closed or self._broken is not None or session.is_closed:
            raise await self._put_refused()
        try:  # `_offer`, inline: one call less per value
            accepted = self._outbox.offer(value)
        except MessageTooLarge:
            raise
        except EncodeError:
            raise _cannot_cross(self.name, value) from None
        if not accepted:
            accepted = await self._room_for(value, session)
        if accepted == FULL_BATCH or not self._send_scheduled:
            self._accepted(accepted)

    def put_nowait(self, value: T) -> None:
        """Send ``value`` without waiting; `asyncio.QueueFull` if ``maxsize`` values put here are
        not yet taken there."""
        session = self._session
        if session is None or self._closed or self._broken is not None or session.is_closed:
            raise self._put_refused_now()
        accepted = self._offer(self._outbox.offer, value)
        if not accepted:
            raise asyncio.QueueFull
        self._accepted(accepted)

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
        if self._stale:
            self._stale -= 1
            return value
        batch = self._inbox[0]
        batch[0] -= 1
        if not batch[0]:  # the batch's last value: its credit goes back
            self._inbox.popleft()
            if self._session is not None:
                self._session.message_consumed(batch[1])
                self._turn_due = True
        return value

    async def __anext__(self) -> T:
        if self._turn_due:
            await self._yield()
        if self._items:  # the common case under load: one coroutine per value, not two
            return self.get_nowait()
        try:
            return await self.get()
        except ChannelClosed:
            raise StopAsyncIteration from None

    async def get(self) -> T:
        """Take the oldest value, waiting for one; raises as `get_nowait` once nothing can come."""
        if self._turn_due:
            await self._yield()
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
        too (their values not sent); values already put still reach the other end, and both ends
        can still take what arrived. Idempotent."""
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

    async def _yield(self) -> None:
        """Let the loop run once. A batch leaves at the end of a loop turn (the session's write),
        and reads happen between turns: a producer that puts, or a
        consumer that takes, without ever waiting would keep its batches or its credit back until
        it had to wait, and the two sides would take turns instead of working at once. Done
        before the operation, so a cancellation here has taken or sent nothing."""
        self._turn_due = False
        await asyncio.sleep(0)

    def _put_refused_now(self) -> BaseException:
        """Why a put cannot go: closed, broken, not linked, or a lost link (then a plain
        `ChannelBroken`: `_put_refused` waits for the worker's exit status instead)."""
        if self._closed and self._broken is None and self._breaking is None:
            return ChannelClosed(f"put() on closed channel {self.name!r}")
        if self._broken is not None:
            return self._broken
        if self._session is None:
            return RuntimeError(f"{self!r} is not linked: pass it to namewire.fork() first")
        return ChannelBroken(self.name, "the other end went away")

    async def _put_refused(self) -> BaseException:
        """`_put_refused_now`, but a lost link's error waits for the worker's exit status."""
        error = self._put_refused_now()
        if type(error) is ChannelBroken and self._broken is None:
            return await self._broken_error()
        return error

    async def _room_for(self, value: Any, session: Session) -> int:
        """Wait until the outbox takes ``value`` (what `Outbox.offer` answered then)."""
        offer = self._outbox.offer
        while not (accepted := self._offer(offer, value)):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._putters:
                    self._putters.remove(waiter)
                raise
            if self._closed or self._broken is not None or session.is_closed:
                raise await self._put_refused()
        return accepted

    def _offer(self, offer: Callable[[Any], int], value: Any) -> int:
        try:
            return offer(value)
        except MessageTooLarge:
            raise
        except EncodeError:
            raise _cannot_cross(self.name, value) from None

    def _accepted(self, offer: int) -> None:
        """A value went into the outbox: it leaves with the others put in this loop turn, or at
        once when they make a full batch."""
        if offer == FULL_BATCH:
            self._send_batches()
            self._turn_due = True
        elif not self._send_scheduled:
            self._send_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_batches)

    def _send_batches(self, *, everything: bool = False) -> None:
        """Hand the waiting values to the session as batches while its window has room.

        ``everything``: all of them now, past the session's window, because a close (or the
        reply to one) follows them; they are inside the outbox's bound all the same.
        """
        self._send_scheduled = False
        session = self._session
        outbox = self._outbox
        if session is None or session.is_closed or not outbox.waiting:
            return
        limit = outbox.value_limit + BATCH_OVERHEAD
        in_flight = min(self._capacity, BATCHES_IN_FLIGHT)
        while outbox.waiting:
            if not everything and session.connection.unacked[0] >= in_flight:
                break  # credit coming back sends the rest (`_credit_returned`)
            payload, count, size = outbox.next_batch(limit, everything=everything)
            if everything:
                session.push(payload)
            elif not session.send_msg_nowait(payload):
                break
            outbox.sent(count, size)

    def _credited(self) -> bool:
        """Forget the batches whose credit came back; True if that made room."""
        session = self._session
        return session is not None and self._outbox.credited(session.connection.unacked[0])

    def _credit_returned(self, session: Session) -> None:
        """The session's window opened (credit came back, or the peer's hello arrived)."""
        if session is not self._session:
            return
        freed = self._credited()
        self._send_batches()
        if freed:
            self._wake_putters()

    def _wake_putters(self) -> None:
        # Every waiting put re-checks for room in turn; those that find none wait again.
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _mark_closed(self) -> None:
        Channel.close(self)  # waiting puts wake and find the channel closed

    async def _send_close(self, session: Session) -> None:
        try:
            self._send_batches(everything=True)
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
        Channel.close(self)  # wakes the getters and putters, which now find the error

    # -- SessionHandler ----------------------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        self._outbox.value_limit = _frame_limit(session) - BATCH_OVERHEAD

    def message_received(self, session: Session, payload: Any, size: int) -> None:
        try:
            values = decode_batch(payload)
        except ProtocolError as exc:
            log.error("worker channel %r: dropping the link: %s", self.name, exc)
            session.abort(exc)
            return
        if not values:
            session.message_consumed(size)
            return
        self._items.extend(values)
        self._inbox.append([len(values), size])
        # Under load the reader is busy, not waiting: the loop runs zero times.
        for _ in range(min(len(values), len(self._getters))):
            self._wake_getter()

    def call_received(self, session: Session, call: Call) -> None:
        if call.func == _CLOSE:
            self._send_batches(everything=True)  # values put here before the close came go first
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
            # Getters and putters waiting now re-check and wait for the error.
            while self._getters:
                waiter = self._getters.popleft()
                if not waiter.done():
                    waiter.set_result(self)
            self._wake_putters()


class _ChannelSession(Session):
    """The session of one link. Its channel hears when credit comes back (the core's
    `WindowOpened`, which a plain session turns into waking its `send_msg` waiters); a full
    window is the normal state of a bounded channel, not worth a warning."""

    __slots__ = ("_channel",)

    def __init__(self, channel: WorkerChannel[Any], **options: Any) -> None:
        super().__init__(channel.name, channel, **options)
        self._channel = channel

    def _sender_blocked(self, event: Any) -> None:
        pass

    def _wake_sender(self) -> None:
        self._channel._credit_returned(self)


def _frame_limit(session: Session) -> int:
    """The largest frame the other end takes (from its hello; the default until it arrives)."""
    limit = session.peer_info.get("max_frame")
    return limit if type(limit) is int else DEFAULT_MAX_FRAME


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
