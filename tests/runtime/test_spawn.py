"""Light processes: names, crash logging, handles."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from namewire.runtime import Process, current_process_name, running_processes, spawn


async def test_crash_is_logged_with_name_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="namewire.runtime")

    async def explode() -> None:
        await asyncio.sleep(0)
        raise ValueError("kaboom")

    process = spawn(explode, name="exploder")
    await asyncio.wait([process.task])
    await asyncio.sleep(0)
    records = [r for r in caplog.records if r.name == "namewire.runtime"]
    assert len(records) == 1
    assert "'exploder' crashed" in records[0].getMessage()
    assert records[0].exc_info is not None and records[0].exc_info[0] is ValueError
    assert "in explode" in caplog.text  # the traceback names the failing function
    assert "kaboom" in caplog.text


async def test_unawaited_crash_is_not_reported_twice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)

    async def explode() -> None:
        raise RuntimeError("once")

    process = spawn(explode(), name="once")
    await asyncio.wait([process.task])
    del process
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
    assert caplog.text.count("'once' crashed") == 1


async def test_handle_awaits_result_and_names_task() -> None:
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    process: Process[int] = spawn(add, 2, 3, name="adder")
    assert process.name == "adder" and process.task.get_name() == "adder"
    assert process in running_processes()
    assert await process == 5
    assert process.done() and process.result() == 5
    assert process not in running_processes()


async def test_cancel_and_default_name() -> None:
    async def forever() -> None:
        await asyncio.sleep(3600)

    process = spawn(forever)
    assert process.name.startswith("test_cancel_and_default_name.<locals>.forever-")
    await asyncio.sleep(0)
    assert process.cancel()
    with pytest.raises(asyncio.CancelledError):
        await process
    assert process.cancelled()


async def test_process_name_is_visible_inside_and_inherited() -> None:
    seen: list[str] = []

    async def child() -> None:
        seen.append(current_process_name())

    async def parent() -> None:
        seen.append(current_process_name())
        await asyncio.create_task(child())

    await spawn(parent, name="parent-proc")
    assert seen == ["parent-proc", "parent-proc"]
    assert current_process_name() == "-"


async def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="not a coroutine"):
        spawn(lambda: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="coroutine or an async function"):
        spawn(42)  # type: ignore[call-overload]

    async def noop() -> None:
        pass

    coro = noop()
    with pytest.raises(TypeError, match="arguments given with a coroutine"):
        spawn(coro, 1)  # type: ignore[call-overload]
    coro.close()


def test_spawn_needs_a_running_loop() -> None:
    async def noop() -> None:
        pass

    with pytest.raises(RuntimeError):
        spawn(noop)
