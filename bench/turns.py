"""Whether the two sides of a busy connection work at once: Plus by name, early writes on and off.

    .venv/bin/python bench/turns.py [--callers 100,1000] [--seconds 4] [--rounds 2] [--json OUT]

A session writes what one loop turn queued in one write, and writes early every 32 frames
(`namewire.transport._session.FLUSH_FRAMES`). Without the early writes, a read that carries every
caller's call is answered in one write at its end: the caller's side waits while the server works
through the batch, then the server waits while the callers work through the replies. The two
sides take turns and neither reaches its CPU's limit. This runs the same PlusServer and caller
node with early writes on (the default) and off (``FLUSH_FRAMES`` and ``FLUSH_BYTES`` set out of
reach in both processes: one write per turn), alternating, and reports per mode:

- calls/s (median of the rounds) and the on / off ratio;
- calls handled per wake-up of each side: calls divided by the voluntary context switches of its
  process (each one a sleep in epoll with nothing to do). When the sides take turns both handle
  the whole batch (the number of callers) per wake-up; when they work at once, the slower side
  hardly sleeps (many calls per wake-up) and the faster one wakes for each chunk;
- CPU time per call of each side.

The server runs on CPU 0 and the caller on CPU 1 where ``taskset`` can pin them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "clients"))

from _procs import CLIENT_CPU, SERVER_CPU, free_port, pinned, wait_port  # noqa: E402
from metrics_overhead import cpu_seconds  # noqa: E402

PY = sys.executable
_MODES = ("early", "per-turn")


def _writes_once_per_turn(mode: str) -> None:
    if mode == "per-turn":
        from namewire.transport import _session

        _session.FLUSH_FRAMES = _session.FLUSH_BYTES = 1 << 40


def serve(nameservice: str, name: str, mode: str) -> None:
    _writes_once_per_turn(mode)
    import asyncio

    import namewire

    node = namewire.Node(name)

    @node.function
    def plus(a: int, b: int) -> int:
        return a + b

    async def main() -> None:
        async with node.serve(nameservice=nameservice, unix=False):
            print("READY", flush=True)
            await asyncio.Event().wait()

    namewire.run(main())


def load(nameservice: str, target: str, mode: str, callers: int, seconds: float) -> None:
    _writes_once_per_turn(mode)
    import os

    from _rpcload import emit, run_async_callers
    from namewire_plus import first_call

    import namewire

    async def main() -> dict[str, Any]:
        node = namewire.Node(f"turns-client-{os.getpid()}")
        async with node.serve(nameservice=nameservice, listen=None):
            await first_call(node, target)
            return await run_async_callers(
                lambda: node.rpc_call(target, "plus", 1, 2), callers, seconds, 0.5
            )

    emit(namewire.run(main()))


def _sleeps(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def measure(nameservice: str, mode: str, index: int, callers: int, seconds: float) -> dict[str, Any]:
    name = f"PlusServer-{mode}-{callers}-{index}"
    server = subprocess.Popen(
        pinned(SERVER_CPU, [PY, __file__, "serve", "--nameservice", nameservice, "--name", name,
                            "--mode", mode]),
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "READY":
            raise SystemExit(f"server {name} did not start")
        client = subprocess.Popen(
            pinned(CLIENT_CPU, [PY, __file__, "load", "--nameservice", nameservice, "--target",
                                name, "--mode", mode, "--callers", str(callers), "--seconds",
                                str(seconds)]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        # The window: after the client's set-up and warm-up (0.5 s), before its end.
        time.sleep(1.5)
        marks = [(_sleeps(p), cpu_seconds(p)) for p in (server.pid, client.pid)]
        start = time.monotonic()
        time.sleep(max(0.5, seconds - 1.5))
        ends = [(_sleeps(p), cpu_seconds(p)) for p in (server.pid, client.pid)]
        window = time.monotonic() - start
        out, err = client.communicate(timeout=seconds + 60)
    finally:
        server.terminate()
        server.wait(10)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if client.returncode != 0 or not lines:
        raise SystemExit(f"load against {name} failed: {err[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    if result.get("errors"):
        raise SystemExit(f"load against {name}: {result['errors']} errors, {result['error']}")
    calls = result["calls_per_s"] * window
    for side, (s0, c0), (s1, c1) in zip(("server", "client"), marks, ends):
        result[f"{side}_calls_per_wakeup"] = round(calls / max(1, s1 - s0), 1)
        result[f"{side}_us_per_call"] = round((c1 - c0) * 1e6 / calls, 2)
    return result


def run(callers_list: list[int], seconds: float, rounds: int) -> list[dict[str, Any]]:
    port = free_port()
    nameservice = f"tcp://127.0.0.1:{port}"
    ns = subprocess.Popen(
        pinned(SERVER_CPU, [PY, "-m", "namewire", "nameservice", "--listen", nameservice,
                            "--log-level", "WARNING"]),
    )
    rows = []
    try:
        wait_port(port, ns)
        for callers in callers_list:
            points: dict[str, list[dict[str, Any]]] = {mode: [] for mode in _MODES}
            for index in range(rounds):
                for mode in _MODES if index % 2 == 0 else reversed(_MODES):
                    point = measure(nameservice, mode, index, callers, seconds)
                    points[mode].append(point)
                    print(f"{callers} callers, {mode:>8} round {index + 1}: "
                          f"{point['calls_per_s']:,.0f} calls/s; calls per wake-up server "
                          f"{point['server_calls_per_wakeup']}, client "
                          f"{point['client_calls_per_wakeup']}", file=sys.stderr)
            for mode in _MODES:
                row: dict[str, Any] = {"callers": callers, "writes": mode}
                for key in ("calls_per_s", "server_calls_per_wakeup", "client_calls_per_wakeup",
                            "server_us_per_call", "client_us_per_call"):
                    row[key] = round(statistics.median(p[key] for p in points[mode]), 1)
                rows.append(row)
            rows[-2]["early_vs_per_turn"] = round(rows[-2]["calls_per_s"] / rows[-1]["calls_per_s"], 3)
    finally:
        ns.terminate()
        ns.wait(10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    s = sub.add_parser("serve")
    s.add_argument("--nameservice", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--mode", choices=_MODES, required=True)
    ld = sub.add_parser("load")
    ld.add_argument("--nameservice", required=True)
    ld.add_argument("--target", required=True)
    ld.add_argument("--mode", choices=_MODES, required=True)
    ld.add_argument("--callers", type=int, required=True)
    ld.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--callers", default="100,1000",
                        help="comma-separated caller counts (default: 100,1000)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.role == "serve":
        serve(args.nameservice, args.name, args.mode)
    elif args.role == "load":
        load(args.nameservice, args.target, args.mode, args.callers, args.seconds)
    else:
        rows = run([int(c) for c in args.callers.split(",")], args.seconds, args.rounds)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=1))
        for row in rows:
            print(json.dumps(row))


if __name__ == "__main__":
    main()
