"""Channels: bounded put, close and drain, async iteration, select, no value lost on cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest

from namewire.errors import ChannelClosed
from namewire.runtime import Channel, select, spawn


async def test_put_waits_while_full() -> None:
    ch: Channel[int] = Channel(2)
    await ch.put(1)
    await ch.put(2)
    assert ch.full()
    third = asyncio.create_task(ch.put(3))
    await asyncio.sleep(0.01)
    assert not third.done()
    assert await ch.get() == 1
    await asyncio.wait_for(third, 1)
    assert [ch.get_nowait(), ch.get_nowait()] == [2, 3]
    with pytest.raises(asyncio.QueueEmpty):
        ch.get_nowait()
    with pytest.raises(ValueError):
        Channel(0)


async def test_close_then_drain() -> None:
    ch: Channel[str] = Channel(4)
    await ch.put("a")
    await ch.put("b")
    ch.close()
    ch.close()  # idempotent
    assert ch.closed
    with pytest.raises(ChannelClosed):
        await ch.put("c")
    assert await ch.get() == "a"
    assert await ch.get() == "b"
    with pytest.raises(ChannelClosed):
        await ch.get()


async def test_close_wakes_waiting_getters_and_putters() -> None:
    empty: Channel[int] = Channel(1)
    getter = asyncio.create_task(empty.get())
    full: Channel[int] = Channel(1)
    full.put_nowait(0)
    putter = asyncio.create_task(full.put(1))
    await asyncio.sleep(0)
    empty.close()
    full.close()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(getter, 1)
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(putter, 1)
    assert full.get_nowait() == 0  # the value buffered before close is still there


async def test_async_iteration_ends_at_close_and_drain() -> None:
    ch: Channel[int] = Channel(3)

    async def produce() -> None:
        for i in range(100):
            await ch.put(i)
        ch.close()

    producer = spawn(produce)
    received = [x async for x in ch]
    await producer
    assert received == list(range(100))


async def test_select_returns_first_ready_channel() -> None:
    a: Channel[str] = Channel(1)
    b: Channel[str] = Channel(1)
    b.put_nowait("from b")
    assert await select(a, b) == (b, "from b")
    a.put_nowait("from a")
    b.put_nowait("b again")
    assert await select(a, b) == (a, "from a")  # earlier argument wins when both are ready

    async def later() -> None:
        await asyncio.sleep(0.01)
        await a.put("late a")

    spawn(later)
    assert await select(a, b, timeout=1) == (b, "b again")
    assert await select(a, b, timeout=1) == (a, "late a")


async def test_select_timeout_and_all_closed() -> None:
    a: Channel[int] = Channel(1)
    b: Channel[int] = Channel(1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        await select(a, b, timeout=0.02)
    assert loop.time() - start >= 0.015
    assert not a._getters and not b._getters  # the timed-out waiter left no trace
    a.close()
    b.put_nowait(7)
    b.close()
    assert await select(a, b) == (b, 7)
    with pytest.raises(ChannelClosed):
        await select(a, b)
    with pytest.raises(ValueError):
        await select()


async def test_cancelled_get_loses_no_value() -> None:
    ch: Channel[str] = Channel(1)
    first = asyncio.create_task(ch.get())
    second = asyncio.create_task(ch.get())
    await asyncio.sleep(0)
    ch.put_nowait("precious")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs: the wake-up must pass to `second`
    assert await asyncio.wait_for(second, 1) == "precious"
    assert first.cancelled()

    lonely = asyncio.create_task(ch.get())
    await asyncio.sleep(0)
    ch.put_nowait("kept")
    lonely.cancel()
    await asyncio.sleep(0)
    assert ch.get_nowait() == "kept"


async def test_cancelled_select_loses_no_value() -> None:
    a: Channel[int] = Channel(1)
    b: Channel[int] = Channel(1)
    selecting = asyncio.create_task(select(a, b))
    getter = asyncio.create_task(b.get())
    await asyncio.sleep(0)
    b.put_nowait(42)  # wakes the select, which waited first
    selecting.cancel()
    assert await asyncio.wait_for(getter, 1) == 42
    assert not a._getters and not b._getters


async def test_many_producers_consumers_with_cancellations_keep_every_value() -> None:
    rng = random.Random(7)
    ch: Channel[int] = Channel(4)
    received: list[int] = []

    async def producer(base: int) -> None:
        for i in range(200):
            await ch.put(base + i)

    async def consumer() -> None:
        while True:
            received.append(await ch.get())

    producers = [spawn(producer, n * 1000) for n in range(5)]
    consumers = [asyncio.create_task(consumer()) for _ in range(4)]
    for _ in range(60):
        await asyncio.sleep(0)
        victim = rng.randrange(len(consumers))
        consumers[victim].cancel()
        consumers[victim] = asyncio.create_task(consumer())
    await asyncio.gather(*(p.task for p in producers))
    while len(ch):
        await asyncio.sleep(0)
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    assert sorted(received) == sorted(n * 1000 + i for n in range(5) for i in range(200))
