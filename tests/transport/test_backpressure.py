"""Memory stays bounded when the other side does not read, on the sending and the receiving end."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from namewire.transport import StreamSocket, listen

from .conftest import raw_connect

# Sends up to 500 MB of distinct 64 KiB packets (no shared buffer the loop could hold by reference).
SENDER = textwrap.dedent(
    """
    import asyncio, sys
    import uvloop
    from namewire.transport import connect

    async def main(url: str) -> None:
        sock = await connect(url)
        print("connected", flush=True)
        base = bytes(64 * 1024)
        sent = 0
        i = 0
        while sent < 500 * 1024 * 1024:
            await sock.send(base + i.to_bytes(8, "big"))
            sent += len(base) + 8
            i += 1
        print("done", flush=True)

    runner = uvloop.run if sys.argv[2] == "uvloop" else asyncio.run
    runner(main(sys.argv[1]))
    """
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sender_waits_for_a_peer_that_does_not_read(loop: str, tmp_path: Path) -> None:
    receiver = socket.socket()
    receiver.bind(("127.0.0.1", 0))
    receiver.listen(1)
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    host, port = receiver.getsockname()
    proc = subprocess.Popen(
        [sys.executable, str(script), f"tcp://{host}:{port}", loop],
        stdout=subprocess.PIPE,
        text=True,
    )
    accepted = None
    try:
        accepted, _ = receiver.accept()  # and never read from it
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "connected"
        before = rss_kib(proc.pid)
        time.sleep(2.0)
        growth_mib = (rss_kib(proc.pid) - before) / 1024
        assert proc.poll() is None, "the sender finished: nothing held it back"
        assert growth_mib < 64, f"sender RSS grew by {growth_mib:.0f} MiB"
    finally:
        proc.kill()
        proc.wait(10)
        if accepted is not None:
            accepted.close()
        receiver.close()


async def test_receiver_that_does_not_read_pauses_reading() -> None:
    start_reading = asyncio.Event()
    received: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def lazy(sock: StreamSocket) -> None:
        await start_reading.wait()
        total = 0
        while (chunk := await sock.recv()) is not None:
            total += len(chunk)
        received.set_result(total)

    loop = asyncio.get_running_loop()
    async with await listen("tcp://127.0.0.1:0", lazy, framed=False, queue_limit=256 * 1024) as lis:
        raw = await raw_connect(lis.address)
        chunk = bytes(256 * 1024)
        sent = 0
        deadline = loop.time() + 10
        try:
            # Push until the kernel buffers are full and stay full: the server stopped reading.
            stalled_since = None
            while loop.time() < deadline:
                try:
                    sent += raw.send(chunk)
                    stalled_since = None
                except BlockingIOError:
                    stalled_since = stalled_since or loop.time()
                    if loop.time() - stalled_since > 0.3:
                        break
                    await asyncio.sleep(0.01)
            assert stalled_since is not None, f"sent {sent} bytes and the peer took them all"
            assert sent < 48 * 1024 * 1024, (
                f"{sent} bytes accepted by a receiver that does not read"
            )
            start_reading.set()
            await loop.sock_sendall(raw, b"end")
            raw.shutdown(socket.SHUT_WR)
            assert await asyncio.wait_for(received, 10) == sent + 3
        finally:
            raw.close()
