"""Workers that end: kill -9, exit codes, crashes fail the parent's pending channel operations with
`WorkerExited`; a Supervisor restarts them by policy; a parent killed with -9 leaves no orphans."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from namewire import Supervisor
from namewire.errors import SupervisorFailed, WorkerExited
from namewire.workers import WorkerChannel, fork, run_worker

from ..conftest import Processes
from . import targets
from .conftest import process_alive

pytestmark = pytest.mark.timeout(40)


async def test_kill_9_fails_pending_get_and_put_with_the_signal() -> None:
    ch: WorkerChannel[Any] = WorkerChannel(2)
    worker = await fork(targets.report_pid_and_wait, ch)
    try:
        assert await asyncio.wait_for(ch.get(), 10) == worker.pid
        await ch.put(1)
        await ch.put(2)  # the window is full now: the worker never reads
        pending_put = asyncio.create_task(ch.put(3))
        pending_get = asyncio.create_task(ch.get())
        await asyncio.sleep(0.05)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        for op in (pending_put, pending_get):
            with pytest.raises(WorkerExited) as info:
                await asyncio.wait_for(op, 5)
            assert info.value.signal == "SIGKILL" and info.value.exitcode is None
            assert info.value.pid == worker.pid
            assert "killed by SIGKILL" in str(info.value)
        assert worker.exitcode == -signal.SIGKILL
        with pytest.raises(WorkerExited):  # and every later operation
            await ch.put(4)
    finally:
        await worker.stop()


async def test_exit_code_reaches_the_parent() -> None:
    ch: WorkerChannel[Any] = WorkerChannel(2)
    worker = await fork(targets.exit_with, ch, 3)
    try:
        await ch.put("go")
        with pytest.raises(WorkerExited) as info:
            await asyncio.wait_for(ch.get(), 10)
        assert info.value.exitcode == 3 and info.value.signal is None
        assert "exited with code 3" in str(info.value)
    finally:
        await worker.stop()


@pytest.mark.parametrize("thread", [False, True], ids=["process", "thread"])
async def test_a_crash_fails_pending_operations(thread: bool) -> None:
    ch: WorkerChannel[Any] = WorkerChannel(2)
    worker = await fork(targets.crash, ch, thread=thread)
    try:
        waiting = asyncio.create_task(ch.get())
        await ch.put("go")
        with pytest.raises(WorkerExited) as info:
            await asyncio.wait_for(waiting, 10)
        assert info.value.exitcode == 1
        if thread:
            assert info.value.pid is None
            assert info.value.error == "RuntimeError: worker crashed on purpose"
    finally:
        await worker.stop()


async def test_supervisor_restarts_a_crashed_worker_and_the_channel_works_again(
    tmp_path: Path,
) -> None:
    ch: WorkerChannel[Any] = WorkerChannel(4)
    marker = str(tmp_path / "ran-once")
    async with Supervisor("one_for_one", max_restarts=3, within=30, backoff=0.05) as sup:
        sup.spawn(run_worker, targets.crash_first_time, marker, ch, name="echoer")
        # The first incarnation exits with 3 at once; operations on its link fail with that.
        with pytest.raises(WorkerExited) as info:
            await asyncio.wait_for(ch.get(), 10)
        assert info.value.exitcode == 3
        deadline = time.monotonic() + 10
        while True:  # the restarted worker is linked to the same channel
            try:
                await ch.put("again")
                break
            except WorkerExited:
                assert time.monotonic() < deadline, "the worker was not restarted"
                await asyncio.sleep(0.05)
        assert await asyncio.wait_for(ch.get(), 10) == "again"
        assert sup.restarts == 1
        ch.close()  # the echo loop ends, the target returns: the child leaves the group


async def test_supervisor_gives_up_loudly_after_max_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = time.monotonic()
    with pytest.raises(SupervisorFailed) as info:
        async with Supervisor("one_for_one", max_restarts=2, within=30, backoff=0.1) as sup:
            sup.spawn(run_worker, targets.always_exit_3, name="doomed")
    assert isinstance(info.value.error, WorkerExited) and info.value.error.exitcode == 3
    assert "failed after 2 restarts" in str(info.value)
    assert any(r.levelname == "ERROR" and "doomed" in r.getMessage() for r in caplog.records)
    assert time.monotonic() - started >= 0.29  # the backoff (0.1 s, then 0.2 s) doubled


def test_parent_killed_with_9_leaves_no_orphan(procs: Processes) -> None:
    parent = procs.start("-m", "tests.workers.parent_app")
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line.startswith("worker "), line
    worker_pid = int(line.split()[1])
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 10
        while process_alive(worker_pid):
            assert time.monotonic() < deadline, f"worker {worker_pid} outlived its parent"
            time.sleep(0.05)
    finally:
        if process_alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)

