"""RPC calls/s over ws:// against tcp:// in the same run: what the WebSocket framing costs.

    .venv/bin/python bench/ws_rpc.py [--seconds 3] [--callers 100]

A server process (one per scheme, pinned to CPU 0 where taskset exists) answers `plus` on a
`Session`; this process (CPU 1) keeps ``--callers`` calls in flight for ``--seconds`` and counts
the answers. Both schemes run back to back, so the ratio is what to read, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import namewire  # noqa: E402
from namewire.transport import Session, connect_session, listen_sessions  # noqa: E402


class Answer:
    def session_opened(self, session: Session) -> None: ...
    def message_received(self, session: Session, payload: Any, size: int) -> None: ...
    def cancel_received(self, session: Session, call_id: int) -> None: ...
    def session_closed(self, session: Session, reason: BaseException | None) -> None: ...

    def call_received(self, session: Session, call: Any) -> None:
        session.reply(call.id, call.args[0] + call.args[1])


async def serve(url: str) -> None:
    _, bound = await listen_sessions(url, lambda: Session("server", Answer(), codec=None))
    print(bound, flush=True)
    await asyncio.Event().wait()


async def measure(url: str, seconds: float, callers: int) -> float:
    session = Session("client", Answer())
    await connect_session(url, session, timeout=5)
    await session.wait_open()
    done = 0
    stop = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await session.call("plus", (1, 2), timeout=10)
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(callers)))
    rate = done / (time.monotonic() - start)
    session.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=100)
    args = parser.parse_args()
    if args.serve:
        namewire.run(serve(args.serve))
        return
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    if pin:
        os.sched_setaffinity(0, {1})
    rates = {}
    for url in ("tcp://127.0.0.1:0", "ws://127.0.0.1:0/"):
        server = subprocess.Popen([*pin, sys.executable, __file__, "--serve", url],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            bound = server.stdout.readline().strip()
            rates[url.split(":")[0]] = namewire.run(measure(bound, args.seconds, args.callers))
        finally:
            server.kill()
            server.wait()
    for scheme, rate in rates.items():
        print(f"{scheme:4} {rate:10,.0f} calls/s")
    print(f"ws/tcp {rates['ws'] / rates['tcp']:.2f}")


if __name__ == "__main__":
    main()
