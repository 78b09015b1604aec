"""`namewire.run`: light processes stopped newest first after main, signals, grace period.

`run` owns its loop, so each test runs a small program in a fresh interpreter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


def _program(body: str) -> str:
    return textwrap.dedent(body)


def _run(code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _program(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_outstanding_processes_are_stopped_in_reverse_start_order() -> None:
    result = _run(
        """
        import asyncio
        import namewire
        from namewire.runtime import spawn

        stopped = []

        async def service(name):
            try:
                await asyncio.sleep(3600)
            finally:
                stopped.append(name)
                await asyncio.sleep(0.01)  # cleanup that awaits still gets to finish

        async def main():
            for name in ("first", "second", "third"):
                spawn(service, name, name=name)
            await asyncio.sleep(0.01)
            return "main result"

        print(namewire.run(main()))
        print(",".join(stopped))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["main", "result", "third,second,first"]


def test_grace_warning_for_slow_process() -> None:
    result = _run(
        """
        import asyncio, time
        import namewire
        from namewire.runtime import spawn

        async def slow_to_stop():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                try:
                    await asyncio.sleep(3600)  # the loop's final cancel interrupts this
                finally:
                    print("interrupted by the final cancel")
                raise

        async def main():
            spawn(slow_to_stop, name="slow")
            await asyncio.sleep(0)

        start = time.monotonic()
        namewire.run(main(), grace=0.2)
        print(f"elapsed {time.monotonic() - start:.2f}")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "light process 'slow' did not stop within the 0.2 s grace period" in result.stderr
    elapsed = float(result.stdout.split("elapsed")[1])
    assert 0.15 < elapsed < 3
    assert "interrupted by the final cancel" in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_main_then_processes_cleanly(tmp_path: Path) -> None:
    marker = tmp_path / "cleanup.txt"
    code = _program(
        f"""
        import asyncio, sys
        import namewire
        from namewire.runtime import spawn

        def note(line):
            with open({str(marker)!r}, "a") as f:
                f.write(line + "\\n")

        async def worker():
            try:
                await asyncio.sleep(3600)
            finally:
                note("worker cleanup")

        async def main():
            spawn(worker, name="worker")
            try:
                print("ready", flush=True)
                await asyncio.sleep(3600)
            finally:
                note("main cleanup")

        result = namewire.run(main())
        note(f"run returned {{result!r}}")
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        start = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert marker.read_text().splitlines() == [
        "main cleanup",
        "worker cleanup",
        "run returned None",
    ]


def test_run_raises_the_young_generation_threshold_while_it_runs_and_puts_it_back() -> None:
    import gc

    import namewire
    from namewire.runtime._gc import GC_YOUNG_THRESHOLD

    before = gc.get_threshold()
    assert before[0] < GC_YOUNG_THRESHOLD  # CPython's default (700)

    async def seen() -> tuple[int, int, int]:
        return gc.get_threshold()

    assert namewire.run(seen()) == (GC_YOUNG_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before
    assert namewire.run(seen(), gc_threshold=None) == before
