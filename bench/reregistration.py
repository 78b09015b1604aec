"""How long after a name service restart a service is registered again (docs/first-hour.md).

    .venv/bin/python bench/reregistration.py [--restarts 5] [--down 0.2,1,3]

Starts a name service and `namewire run tests/apps/worker.py --name W`; then, for each downtime,
kills the name service with SIGKILL, waits that long, starts it again on the same port, and
measures from the moment it accepts connections to the moment a look-up of W succeeds (polled
every 10 ms). Prints the times in milliseconds. Not part of `make bench`: it measures a backoff,
not the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from namewire.errors import NamewireError
from namewire.registry import NameServiceClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> float:
    """Wait until something accepts on ``port``; the monotonic time it did."""
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return time.monotonic()
        except OSError:
            time.sleep(0.002)


async def registered(url: str, name: str) -> float:
    """Poll until ``name`` is registered at ``url``; the monotonic time it was."""
    while True:
        probe = NameServiceClient(url, node_name=f"probe-{time.monotonic_ns()}")
        try:
            await probe.start()
            await probe.lookup(name)
            return time.monotonic()
        except NamewireError:
            pass
        finally:
            await probe.close()
        await asyncio.sleep(0.01)


def nameservice(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "namewire", "nameservice", "--listen", url,
                             "--log-level", "ERROR"], cwd=ROOT)


def measure(down: float, restarts: int) -> list[float]:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    ns = nameservice(url)
    listening(port)
    service = subprocess.Popen(
        [sys.executable, "-m", "namewire", "run", "tests/apps/worker.py", "--name", "W",
         "--nameservice", url, "--log-level", "ERROR"], cwd=ROOT)
    try:
        asyncio.run(registered(url, "W"))
        times = []
        for _ in range(restarts):
            ns.kill()
            ns.wait()
            time.sleep(down)
            ns = nameservice(url)
            up = listening(port)
            times.append(asyncio.run(registered(url, "W")) - up)
        return times
    finally:
        for proc in (service, ns):
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=5, help="restarts per downtime")
    parser.add_argument("--down", default="0.2,1,3", help="downtimes in seconds, comma-separated")
    args = parser.parse_args()
    for down in (float(d) for d in args.down.split(",")):
        times = measure(down, args.restarts)
        print(f"down {down:g}s: registered again after "
              + ", ".join(f"{t * 1000:.0f}" for t in times) + " ms", flush=True)


if __name__ == "__main__":
    main()
