"""Supervisors: one_for_one and one_for_all restarts, restart intensity, cancel_siblings."""

from __future__ import annotations

import asyncio

import pytest

from namewire.runtime import Supervisor, SupervisorFailed


class Boom(Exception):
    pass


async def test_one_for_one_restarts_only_the_failed_child() -> None:
    starts: list[str] = []

    async def flaky(fail_times: int) -> str:
        starts.append("flaky")
        await asyncio.sleep(0.001)
        if starts.count("flaky") <= fail_times:
            raise Boom("not yet")
        return "ok"

    async def steady() -> None:
        starts.append("steady")
        await asyncio.sleep(0.05)

    async with Supervisor("one_for_one", max_restarts=3, within=5.0) as sup:
        sup.spawn(flaky, 2, name="flaky")
        sup.spawn(steady, name="steady")
    assert starts.count("flaky") == 3
    assert starts.count("steady") == 1
    assert sup.restarts == 2
    assert sup.children == []


async def test_one_for_one_gives_up_and_fails_the_group() -> None:
    cancelled: list[str] = []
    body_finished = False

    async def always_fails() -> None:
        await asyncio.sleep(0.001)
        raise Boom("again")

    async def sibling() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append("sibling")
            raise

    with pytest.raises(SupervisorFailed) as info:
        async with Supervisor("one_for_one", max_restarts=2, within=5.0, name="grp") as sup:
            sup.spawn(sibling, name="sibling")
            sup.spawn(always_fails, name="bad")
            await asyncio.sleep(3600)
            body_finished = True
    assert not body_finished
    assert cancelled == ["sibling"]
    assert sup.restarts == 2
    err = info.value
    assert err.child == "bad" and err.supervisor == "grp"
    assert isinstance(err.__cause__, Boom)
    assert "after 2 restarts within 5.0 s" in str(err)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_restart_window_forgets_old_restarts() -> None:
    runs = 0

    async def fails_slowly() -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.03)
        if runs < 5:
            raise Boom("slow")

    # One restart allowed per 20 ms; failures come every 30 ms, so the limit is never reached.
    async with Supervisor("one_for_one", max_restarts=1, within=0.02) as sup:
        sup.spawn(fails_slowly)
    assert runs == 5 and sup.restarts == 4


async def test_one_for_all_restarts_every_child() -> None:
    starts: dict[str, int] = {"a": 0, "b": 0}
    cancelled: list[str] = []

    async def a() -> None:
        starts["a"] += 1
        await asyncio.sleep(0.01)
        if starts["a"] == 1:
            raise Boom("a fails once")

    async def b() -> None:
        starts["b"] += 1
        try:
            await asyncio.sleep(0.05 if starts["b"] > 1 else 3600)
        except asyncio.CancelledError:
            cancelled.append("b")
            raise

    async with Supervisor("one_for_all", max_restarts=3) as sup:
        sup.spawn(a, name="a")
        sup.spawn(b, name="b")
    assert starts == {"a": 2, "b": 2}
    assert cancelled == ["b"]
    assert sup.restarts == 1


async def test_cancel_siblings_cancels_and_raises_without_restart() -> None:
    order: list[str] = []

    async def failing() -> None:
        order.append("failing started")
        await asyncio.sleep(0.01)
        raise Boom("first failure wins")

    async def sibling(i: int) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            order.append(f"sibling {i} cancelled")
            raise

    with pytest.raises(SupervisorFailed, match="first failure wins") as info:
        async with Supervisor("cancel_siblings") as sup:
            sup.spawn(sibling, 1)
            sup.spawn(failing(), name="failing")  # a coroutine is fine: nothing is restarted
            sup.spawn(sibling, 2)
    assert order[0] == "failing started"
    assert sorted(order[1:]) == ["sibling 1 cancelled", "sibling 2 cancelled"]
    assert info.value.child == "failing"
    assert sup.restarts == 0


async def test_body_error_cancels_children_and_propagates() -> None:
    cancelled = asyncio.Event()

    async def child() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(KeyError):
        async with Supervisor() as sup:
            sup.spawn(child)
            await asyncio.sleep(0)
            raise KeyError("body")
    assert cancelled.is_set()


async def test_external_cancel_stops_children() -> None:
    cancelled: list[str] = []

    async def child() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append("child")
            raise

    async def owner() -> None:
        async with Supervisor() as sup:
            sup.spawn(child)

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == ["child"]


async def test_misuse() -> None:
    sup = Supervisor()

    async def noop() -> None:
        pass

    with pytest.raises(RuntimeError, match="not running"):
        sup.spawn(noop)
    with pytest.raises(ValueError, match="unknown supervisor policy"):
        Supervisor("rest_for_one")  # type: ignore[arg-type]
    async with Supervisor("one_for_one") as sup:
        with pytest.raises(TypeError, match="not a coroutine"):
            sup.spawn(noop())


async def test_backoff_delays_each_restart_more(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def failing() -> None:
        starts.append(loop.time())
        raise RuntimeError("boom")

    with pytest.raises(SupervisorFailed):
        async with Supervisor("one_for_one", max_restarts=3, within=30, backoff=0.05,
                              max_backoff=0.1, name="backing-off") as sup:
            sup.spawn(failing, name="failing")
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) == 3
    # doubled, then capped (less 5 ms: libuv timers have millisecond resolution)
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.095
    assert any(r.levelname == "ERROR" and "backing-off" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="backoff"):
        Supervisor(backoff=2.0, max_backoff=1.0)
