"""Memory is spent on bytes that arrived, not on the sizes peers announce."""

from __future__ import annotations

import resource
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# Serves frames of up to 16 MiB and answers "stat" on stdin with: connections, bytes buffered.
SERVER = textwrap.dedent(
    """
    import asyncio, resource, sys
    from namewire.transport import listen

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []

    async def hold(sock):
        socks.append(sock)
        await sock.recv()  # never completes: the frame never does

    async def main():
        async with await listen("tcp://127.0.0.1:0", hold, max_frame=16 * 1024 * 1024) as lis:
            print(lis.address, flush=True)
            loop = asyncio.get_running_loop()
            while await loop.run_in_executor(None, sys.stdin.readline):
                print(len(socks), sum(s.buffered for s in socks), flush=True)

    asyncio.run(main())
    """
)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def test_announced_frames_do_not_reserve_their_size(sockets_impl: str, tmp_path: Path) -> None:
    if sockets_impl != "native":
        pytest.skip("the C reactor's read path")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this end holds `count` sockets too
    count = min(1000, hard - 200)
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    peers: list[socket.socket] = []
    try:
        assert proc.stdin is not None and proc.stdout is not None
        host, port = proc.stdout.readline().strip().removeprefix("tcp://").rsplit(":", 1)
        rss, vm = status_kib(proc.pid, "VmRSS"), status_kib(proc.pid, "VmSize")
        announce = struct.pack(">I", 16 * 1024 * 1024) + b"a few bytes"
        for _ in range(count):
            peer = socket.create_connection((host, int(port)))
            peer.sendall(announce)
            peers.append(peer)
        deadline = time.monotonic() + 30
        while True:
            proc.stdin.write("stat\n")
            proc.stdin.flush()
            served, buffered = map(int, proc.stdout.readline().split())
            if served == count and buffered == count * len(announce):
                break
            assert time.monotonic() < deadline, f"{served} served, {buffered} bytes buffered"
            time.sleep(0.1)
        rss_mib = (status_kib(proc.pid, "VmRSS") - rss) / 1024
        vm_mib = (status_kib(proc.pid, "VmSize") - vm) / 1024
        # Allocating each announced frame whole would reserve count * 16 MiB (16 GB for 1000).
        assert rss_mib < 200, f"RSS grew by {rss_mib:.0f} MiB for {count} announced frames"
        assert vm_mib < 400, f"address space grew by {vm_mib:.0f} MiB for {count} announced frames"
    finally:
        for peer in peers:
            peer.close()
        proc.kill()
        proc.wait(10)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
