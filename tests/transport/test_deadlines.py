"""The deadline wheel behind call timeouts: never early, at most one tick late, answered calls skipped."""

from __future__ import annotations

import asyncio

import pytest

from namewire.transport._deadlines import PRECISE_BELOW, TICKS_PER_SECOND, DeadlineWheel

pytestmark = pytest.mark.timeout(20)


async def test_deadlines_fire_in_order_never_early_and_skip_answered_keys() -> None:
    loop = asyncio.get_running_loop()
    fired: list[tuple[int, float]] = []
    pending = {1, 2, 3}
    start = loop.time()
    wheel = DeadlineWheel(loop, pending, lambda key, timeout: fired.append((key, loop.time())))
    assert wheel.add(1, 1.0) is None
    assert wheel.add(2, 1.3) is None
    assert wheel.add(3, 1.0) is None
    pending.discard(3)  # answered: must not fire
    await asyncio.sleep(1.6)
    assert [key for key, _ in fired] == [1, 2]
    for (key, when), timeout in zip(fired, (1.0, 1.3), strict=True):
        late = when - start - timeout
        # Never early (but for libuv's millisecond timer resolution), at most a tick late.
        assert -0.002 <= late < 1 / TICKS_PER_SECOND + 0.1, f"key {key} fired {late:+.3f}s off"
    wheel.close()


async def test_short_timeouts_get_a_precise_timer() -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    wheel = DeadlineWheel(loop, {7}, lambda key, timeout: fired.append(loop.time()))
    start = loop.time()
    handle = wheel.add(7, PRECISE_BELOW / 10)
    assert handle is not None
    await asyncio.sleep(PRECISE_BELOW / 10 + 0.1)
    # libuv timers have millisecond resolution: allow that much.
    assert len(fired) == 1 and fired[0] - start >= PRECISE_BELOW / 10 - 0.002
    wheel.close()
