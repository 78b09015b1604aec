"""Asynchronous file IO: round trips, and the loop keeps ticking while 200 MB go to disk."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from namewire.runtime import fs


async def test_whole_file_round_trips(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    assert await fs.write_bytes(tmp_path / "b.bin", data) == len(data)
    assert await fs.read_bytes(tmp_path / "b.bin") == data
    text = "héllo ✓\nsecond line\n"
    await fs.write_text(tmp_path / "t.txt", text)
    assert await fs.read_text(tmp_path / "t.txt") == text
    await fs.append(tmp_path / "t.txt", "third\n")
    await fs.append(tmp_path / "t.txt", b"fourth\n")
    assert (await fs.read_text(tmp_path / "t.txt")).splitlines()[-2:] == ["third", "fourth"]
    await fs.append(tmp_path / "new.txt", "created by append")
    assert (await fs.stat(tmp_path / "b.bin")).st_size == len(data)
    assert sorted(await fs.listdir(tmp_path)) == ["b.bin", "new.txt", "t.txt"]
    await fs.remove(tmp_path / "new.txt")
    assert sorted(await fs.listdir(str(tmp_path))) == ["b.bin", "t.txt"]
    with pytest.raises(FileNotFoundError):
        await fs.read_bytes(tmp_path / "absent")
    with pytest.raises(FileNotFoundError):
        await fs.stat(tmp_path / "absent")


async def test_async_file_object(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    async with fs.open(path, "w") as out:
        for i in range(5):
            await out.write(f"line {i}\n")
        await out.flush()
        await out.fsync()
    assert out.closed
    f = await fs.open(path)
    try:
        assert await f.readline() == "line 0\n"
        rest = [line async for line in f]
        assert rest == [f"line {i}\n" for i in range(1, 5)]
        await f.seek(0)
        assert (await f.read(6)) == "line 0"
        assert await f.tell() == 6
    finally:
        await f.close()
        await f.close()  # idempotent
    async with fs.open(path, "rb") as raw:
        assert await raw.read() == path.read_bytes()
        assert raw.name == str(path)
    with pytest.raises(FileNotFoundError):
        async with fs.open(tmp_path / "nope", "rb"):
            pass


async def test_concurrent_writes_on_one_file_keep_call_order(tmp_path: Path) -> None:
    path = tmp_path / "ordered.bin"
    async with fs.open(path, "wb") as f:
        await asyncio.gather(*(f.write(bytes([i]) * 1000) for i in range(50)))
    data = path.read_bytes()
    assert data == b"".join(bytes([i]) * 1000 for i in range(50))


async def test_loop_keeps_ticking_while_writing_200_mb(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    path = tmp_path / "big.bin"
    chunk = os.urandom(1 << 20)
    done = asyncio.Event()
    worst = 0.0
    ticks = 0

    async def ticker() -> None:
        nonlocal worst, ticks
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(0.001)
            worst = max(worst, loop.time() - before - 0.001)
            ticks += 1

    timer = asyncio.create_task(ticker())
    try:
        started = loop.time()
        async with fs.open(path, "wb") as f:
            for _ in range(200):
                await f.write(chunk)
        elapsed = loop.time() - started
        done.set()
        await timer
        assert (await fs.stat(path)).st_size == 200 << 20
    finally:
        done.set()
        path.unlink(missing_ok=True)
    assert worst < 0.2, f"the loop stalled {worst * 1000:.1f} ms while writing"
    assert ticks >= min(50, elapsed / 0.01)  # it ticked throughout, not only at the end
