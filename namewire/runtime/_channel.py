"""Channels: bounded, closable FIFO queues between light processes, and `select` over several.

A value stays in the channel's buffer until a receiver actually takes it, so cancelling a waiting `get`
or `select` never loses a value: a receiver that was woken and then cancelled passes the wake-up on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

from ..errors import ChannelClosed

__all__ = ["Channel", "select"]

T = TypeVar("T")

# A waiting receiver's future resolves to the channel that woke it (select waits on several).
_Waiter = asyncio.Future["Channel[Any]"]


class Channel(Generic[T]):
    """A FIFO queue of at most ``maxsize`` values (``None``: unbounded) that can be closed.

    ``put`` waits while the channel is full; ``get`` waits while it is empty. After `close`, ``put``
    raises `ChannelClosed` at once (waiting putters too, their value not added), while ``get`` keeps
    returning the buffered values and raises `ChannelClosed` once they are drained. ``async for x in
    ch`` ends at that point. Waiters are served first come, first served.
    """

    def __init__(self, maxsize: int | None) -> None:
        if maxsize is not None and maxsize < 1:
            raise ValueError(f"Channel maxsize must be >= 1 or None (unbounded), not {maxsize}")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._getters: deque[_Waiter] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Channel {state} {len(self._items)}/{self.maxsize}>"

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """True once `close` was called (values may still be buffered)."""
        return self._closed

    def full(self) -> bool:
        """True if a ``put`` would wait now."""
        return self.maxsize is not None and len(self._items) >= self.maxsize

    def close(self) -> None:
        """Refuse further values and wake every waiter. Idempotent; buffered values stay readable."""
        if self._closed:
            return
        self._closed = True
        while self._getters:
            _wake(self._getters.popleft(), self)
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def put_nowait(self, value: T) -> None:
        """Add ``value`` without waiting; `asyncio.QueueFull` if full, `ChannelClosed` if closed."""
        if self._closed:
            raise ChannelClosed(f"put() on a closed channel ({len(self._items)} values left)")
        if self.full():
            raise asyncio.QueueFull
        self._items.append(value)
        self._wake_getter()

    async def put(self, value: T) -> None:
        """Add ``value``, waiting while the channel is full. Raises `ChannelClosed` if it is closed."""
        while not self._closed and self.full():
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                _discard(self._putters, waiter)
                if waiter.done() and not waiter.cancelled():
                    self._wake_putter()
                raise
        self.put_nowait(value)

    def get_nowait(self) -> T:
        """Take the oldest value without waiting.

        Raises `asyncio.QueueEmpty` if empty and open, `ChannelClosed` if closed and drained.
        """
        if not self._items:
            if self._closed:
                raise ChannelClosed("get() on a closed and drained channel")
            raise asyncio.QueueEmpty
        value = self._items.popleft()
        self._wake_putter()
        return value

    async def get(self) -> T:
        """Take the oldest value, waiting while empty. Raises `ChannelClosed` once closed and drained."""
        while not self._items and not self._closed:
            waiter: _Waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                _discard(self._getters, waiter)
                if waiter.done() and not waiter.cancelled():
                    self._wake_getter()
                raise
        return self.get_nowait()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.get()
        except ChannelClosed:
            raise StopAsyncIteration from None

    def _wake_getter(self) -> None:
        # A waiter already woken by another channel (select) is skipped: it will not come here.
        while self._getters:
            if _wake(self._getters.popleft(), self):
                return

    def _wake_putter(self) -> None:
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _wake(waiter: _Waiter, channel: Channel[Any]) -> bool:
    if waiter.done():
        return False
    waiter.set_result(channel)
    return True


def _discard(waiters: deque[Any], waiter: Any) -> None:
    try:
        waiters.remove(waiter)
    except ValueError:
        pass


async def select(*channels: Channel[Any], timeout: float | None = None) -> tuple[Channel[Any], Any]:
    """Wait until one of ``channels`` has a value and return ``(channel, value)``.

    When several have values, the earliest in the argument list wins. Closed and drained channels are
    skipped. Raises `TimeoutError` when ``timeout`` seconds pass first, `ChannelClosed` once every
    channel is closed and drained, ValueError without channels. A value is taken only when returned, so
    timeout or cancellation loses nothing.
    """
    if not channels:
        raise ValueError("select() needs at least one channel")
    async with asyncio.timeout(timeout):
        while True:
            for channel in channels:
                if channel._items:
                    return channel, channel.get_nowait()
            open_channels = [c for c in channels if not c._closed]
            if not open_channels:
                raise ChannelClosed(f"select(): all {len(channels)} channels closed and drained")
            waiter: _Waiter = asyncio.get_running_loop().create_future()
            for channel in open_channels:
                channel._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    waiter.result()._wake_getter()
                raise
            finally:
                for channel in open_channels:
                    _discard(channel._getters, waiter)
