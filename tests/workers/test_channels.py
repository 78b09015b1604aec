"""Worker channels across a real process boundary (spawn) and a thread's loop: order, close,
back-pressure with bounded memory on both sides, values that cannot cross, select."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from namewire import Channel, select
from namewire.errors import ChannelClosed, ValueCannotCross
from namewire.workers import WorkerChannel, fork

from . import targets

pytestmark = pytest.mark.timeout(30)


async def until_sent(ch: WorkerChannel[Any]) -> None:
    """Until every value put on ``ch`` has left for the worker (a put does not wait for the
    worker to start: values wait for its hello in the channel)."""
    while ch.statistics().unsent:
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("thread", [False, True], ids=["process", "thread"])
async def test_values_cross_in_order_and_the_end_is_seen(thread: bool) -> None:
    jobs: WorkerChannel[int] = WorkerChannel(8)
    results: WorkerChannel[int] = WorkerChannel(8)
    worker = await fork(targets.square, jobs, results, thread=thread)
    try:

        async def produce() -> None:
            for i in range(200):
                await jobs.put(i)
            jobs.close()

        producer = asyncio.create_task(produce())
        out = [x async for x in results]  # ends when the target returns (it closes its channels)
        await producer
        assert out == [i * i for i in range(200)]
        assert await worker.wait() == 0
        with pytest.raises(ChannelClosed):
            await jobs.put(1)
        with pytest.raises(ChannelClosed):
            await results.get()
    finally:
        await worker.stop()


async def test_back_pressure_bounds_both_sides() -> None:
    ch: WorkerChannel[bytes] = WorkerChannel(5)
    control: WorkerChannel[Any] = WorkerChannel(2)
    worker = await fork(targets.hold, ch, control)
    try:
        for _ in range(5):
            await ch.put(b"x" * 100)  # the window: accepted without the worker reading
        blocked = asyncio.create_task(ch.put(b"y"))
        await until_sent(ch)
        await asyncio.sleep(0.3)
        assert not blocked.done(), "a put past the window must wait for the reader"
        assert ch.full()
        assert ch.statistics().in_flight == 5
        await control.put("report")
        assert await control.get() == 5  # the worker holds exactly the window, not more
        await asyncio.wait_for(blocked, 5)  # it read: credit came back and the put went through
        ch.close()
        assert await control.get() == 6
    finally:
        await worker.stop()


async def test_byte_window_bounds_large_values() -> None:
    ch: WorkerChannel[bytes] = WorkerChannel(1000, max_bytes=64 * 1024)
    control: WorkerChannel[Any] = WorkerChannel(2)
    worker = await fork(targets.hold, ch, control)
    try:
        await ch.put(b"z" * 16_000)
        await until_sent(ch)  # the worker's hello has come: it went
        sent = 1
        while True:
            put = asyncio.create_task(ch.put(b"z" * 16_000))
            await asyncio.sleep(0.05)
            if not put.done():
                break
            sent += 1
            assert sent < 10, "the byte window did not stop the producer"
        assert sent == 4  # 4 x 16,000 bytes (plus framing) fit in 64 KiB, a 5th does not
        await until_sent(ch)
        await control.put("report")
        assert await control.get() == 4
        await asyncio.wait_for(put, 5)
        ch.close()
        assert await control.get() == 5
    finally:
        await worker.stop()


async def test_a_value_that_cannot_cross_names_its_type_and_the_channel_carries_on() -> None:
    ch: WorkerChannel[Any] = WorkerChannel(4)
    worker = await fork(targets.echo, ch)
    try:
        with pytest.raises(ValueCannotCross) as info:
            await ch.put({"when": [1, datetime.date(2026, 1, 1)]})
        assert info.value.type_name == "date"
        assert info.value.path == "['when'][1]"
        assert "date" in str(info.value) and "nothing was sent" in str(info.value)
        with pytest.raises(ValueCannotCross, match="type object"):
            ch.put_nowait(object())
        with pytest.raises(ValueCannotCross, match="set"):
            await ch.put({1, 2})
        await ch.put({"still": "works"})
        assert await ch.get() == {"still": "works"}
        ch.put_nowait([1, b"\x00", None, 2.5, "s"])
        assert await ch.get() == [1, b"\x00", None, 2.5, "s"]
    finally:
        await worker.stop()


async def test_values_put_in_one_turn_travel_together_and_a_bad_one_is_refused_alone() -> None:
    ch: WorkerChannel[Any] = WorkerChannel(64)
    worker = await fork(targets.echo, ch)
    try:
        for i in range(10):  # one loop turn: these share batches
            ch.put_nowait(i)
        with pytest.raises(ValueCannotCross) as info:
            ch.put_nowait([10, datetime.date(2026, 1, 1)])
        assert (info.value.type_name, info.value.path) == ("date", "[1]")
        for i in range(10, 20):
            ch.put_nowait(i)
        got = [await asyncio.wait_for(ch.get(), 10) for _ in range(20)]
        assert got == list(range(20))  # the refused value took nothing else with it

        # One batch coming back wakes as many waiting getters as it has values.
        getters = [asyncio.create_task(ch.get()) for _ in range(3)]
        await asyncio.sleep(0.05)
        for i in (1, 2, 3):
            ch.put_nowait(i)
        assert sorted(await asyncio.wait_for(asyncio.gather(*getters), 5)) == [1, 2, 3]
    finally:
        await worker.stop()


async def test_values_still_waiting_for_the_window_reach_the_other_end_before_the_close() -> None:
    ch: WorkerChannel[int] = WorkerChannel(1000)
    control: WorkerChannel[Any] = WorkerChannel(2)
    worker = await fork(targets.hold, ch, control)
    try:
        await ch.put(0)
        await until_sent(ch)  # the worker's hello: 0 leaves
        for i in range(1, 20):
            await ch.put(i)
            await asyncio.sleep(0)  # one batch per loop turn: the session's window fills
        stats = ch.statistics()
        assert stats.unsent, "some values must still wait for the window"
        assert stats.in_flight == 20
        await asyncio.wait_for(ch.aclose(), 5)
        await control.put("report")
        assert await control.get() == 20  # all of them arrived before the close
        assert await control.get() == 20
    finally:
        await worker.stop()


async def test_select_over_worker_and_local_channels() -> None:
    remote: WorkerChannel[str] = WorkerChannel(4)
    local: Channel[str] = Channel(4)
    worker = await fork(targets.echo, remote)
    try:
        await remote.put("from the worker")
        channel, value = await select(local, remote, timeout=5)
        assert (channel, value) == (remote, "from the worker")
        await local.put("local")
        assert await select(local, remote, timeout=5) == (local, "local")
        with pytest.raises(TimeoutError):
            await select(local, remote, timeout=0.05)
    finally:
        await worker.stop()


async def test_misuse_is_refused() -> None:
    ch: WorkerChannel[int] = WorkerChannel(2)
    with pytest.raises(RuntimeError, match="not linked"):
        await ch.put(1)
    with pytest.raises(TypeError, match="async function"):
        await fork(print, ch)  # type: ignore[arg-type]

    async def local_target(c: WorkerChannel[int]) -> None:
        await c.get()

    with pytest.raises(TypeError, match="module-level async function"):
        await fork(local_target, ch)
    assert not ch.linked  # nothing was left half-linked
    worker = await fork(targets.echo, ch)
    try:
        with pytest.raises(ValueError, match="already linked"):
            await fork(targets.echo, ch)
    finally:
        await worker.stop()


async def test_forkserver_start_method() -> None:
    ch: WorkerChannel[Any] = WorkerChannel(4)
    worker = await fork(targets.echo, ch, start_method="forkserver")
    try:
        await ch.put(["through", "forkserver"])
        assert await asyncio.wait_for(ch.get(), 15) == ["through", "forkserver"]
    finally:
        await worker.stop()
