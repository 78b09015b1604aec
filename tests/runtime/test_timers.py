"""Timers: call_later, and every() on a fixed grid of deadlines that skips rather than bunches."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from namewire.runtime import call_later, every, sleep, sleep_until


async def test_every_does_not_drift() -> None:
    loop = asyncio.get_running_loop()
    interval = 0.01
    calls: list[tuple[float, float]] = []
    enough = asyncio.Event()

    def tick() -> None:
        calls.append((ticker.deadline, loop.time()))
        # 3 ms of work per call: a sleep(interval)-after-work loop would drift 150 ms over 50 ticks.
        time.sleep(0.003)
        if len(calls) == 50:
            enough.set()

    ticker = every(interval, tick)
    await asyncio.wait_for(enough.wait(), 5)
    await ticker.stop()
    assert ticker.ticks == 50
    for k, (deadline, at) in enumerate(calls, start=1):
        if ticker.skipped == 0:
            assert deadline == ticker.start + k * interval
        steps = (deadline - ticker.start) / interval
        assert abs(steps - round(steps)) < 1e-6, (
            "every deadline lies on the start + k * interval grid"
        )
        assert at >= deadline - 0.002, f"tick {k} fired {deadline - at:.4f} s early"
        assert at - deadline < 0.05, f"tick {k} is {at - deadline:.4f} s late"
    # The last call is as close to its deadline as the first ones: lateness does not accumulate.
    assert calls[-1][0] >= ticker.start + 50 * interval - 1e-9
    assert calls[-1][1] - calls[-1][0] < 0.02


async def test_every_skips_missed_ticks_instead_of_bunching() -> None:
    loop = asyncio.get_running_loop()
    interval = 0.01
    calls: list[float] = []
    slow_done: list[float] = []

    def tick() -> None:
        calls.append(loop.time())
        if len(calls) == 3:
            time.sleep(0.045)  # misses the deadlines of ticks 4, 5 and 6
            slow_done.append(loop.time())

    async with every(interval, tick) as ticker:
        while len(calls) < 8:
            await asyncio.sleep(0.005)
    assert ticker.skipped >= 3
    after = [t for t in calls if t >= slow_done[0]]
    # Bunching would fire ticks 4 to 7 back to back; we allow one late catch-up call, then the grid.
    assert sum(1 for t in after if t - slow_done[0] < interval) <= 2
    for at in after[1:]:
        # Lateness against the nearest grid point at or before the call (2 ms early allowed).
        lateness = (at - ticker.start + 0.002) % interval - 0.002
        assert lateness < 0.008, f"call at {at - ticker.start:.4f} s is off the grid"


async def test_every_stops_cleanly_and_supports_async_callbacks() -> None:
    running = 0
    overlaps = 0
    count = 0

    async def work() -> None:
        nonlocal running, overlaps, count
        running += 1
        overlaps += running > 1
        await asyncio.sleep(0.015)  # longer than the interval: calls must still not overlap
        running -= 1
        count += 1

    ticker = every(0.005, work, name="worker-ticker")
    assert ticker.name == "worker-ticker"
    await asyncio.sleep(0.1)
    await ticker.stop()
    assert ticker.process.done()
    frozen = count
    await asyncio.sleep(0.05)
    assert count == frozen and count >= 2
    assert overlaps == 0
    assert running in (0, 1)  # a call in flight when stopped is cancelled mid-way


async def test_every_keeps_ticking_after_an_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="namewire.runtime")
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first call fails")

    ticker = every(0.005, flaky)
    await asyncio.sleep(0.05)
    ticker.cancel()
    assert calls >= 3
    assert "callback failed" in caplog.text and "first call fails" in caplog.text


async def test_every_rejects_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        every(0, lambda: None)


async def test_call_later_sync_async_and_cancel(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="namewire.runtime")
    loop = asyncio.get_running_loop()
    events: list[tuple[str, float]] = []
    start = loop.time()

    def sync_cb(tag: str) -> None:
        events.append((tag, loop.time() - start))

    async def async_cb(tag: str) -> None:
        await asyncio.sleep(0)
        events.append((tag, loop.time() - start))

    def broken() -> None:
        raise RuntimeError("timer went wrong")

    # Far apart, so that a loaded machine delaying the loop cannot swap them.
    before = loop.time()
    t1 = call_later(0.2, sync_cb, "sync")
    after = loop.time()
    t2 = call_later(0.01, async_cb, "async", name="async-timer")
    t3 = call_later(0.01, sync_cb, "never")
    call_later(0, broken)
    t3.cancel()
    assert t3.cancelled()
    assert before + 0.2 <= t1.when <= after + 0.2
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(events) == 2:
            break
    await asyncio.sleep(0.02)  # room for a wrongly fired "never"
    assert [tag for tag, _ in events] == ["async", "sync"]
    assert events[1][1] >= 0.2 - 0.002
    assert t1.fired and not t1.cancelled()
    assert t2.process is not None and t2.process.name == "async-timer"
    assert "timer went wrong" in caplog.text


async def test_sleep_and_sleep_until() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await sleep(0.01)
    assert loop.time() - start >= 0.009
    target = loop.time() + 0.02
    await sleep_until(target)
    assert loop.time() >= target - 0.002
    await sleep_until(0)  # in the past: returns at once
