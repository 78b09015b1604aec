"""What counting costs: the Plus benchmark with metrics on and off, in the same run.

    .venv/bin/python bench/metrics_overhead.py [--callers 1000] [--seconds 4] [--rounds 3]
                                               [--together] [--json OUT]

One name service; then, per round, a PlusServer and a caller node with ``Node(metrics=True)`` and
the same pair with ``Node(metrics=False)`` (the order alternates between rounds, so a machine that
slows down during the run does not favour one side). The server runs on CPU 0 and the caller on
CPU 1 where ``taskset`` can pin them. Each pair is measured as the RPC section of bench/run.py
measures (bench/clients/_rpcload.py: warm-up, then calls/s and p50/p99 of the calls inside the
window). Reported: the median calls/s of each mode and their ratio (on / off; the target is at
least 0.90), the median of each round's own on / off ratio (steadier on a shared machine), and
both sides' CPU time per call. With ``--together`` each round runs both pairs at the same time
(servers sharing CPU 0, callers CPU 1), so a machine shared with other work loads both alike:
each gets about half the CPU, and their ratio is the relative cost of a call.
"""

from __future__ import annotations

import argparse
import json
import os
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

PY = sys.executable


def serve(nameservice: str, name: str, metrics: bool) -> None:
    import namewire

    node = namewire.Node(name, metrics=metrics)

    @node.function
    def plus(a: int, b: int) -> int:
        return a + b

    async def main() -> None:
        import asyncio

        async with node.serve(nameservice=nameservice):
            print("READY", flush=True)
            await asyncio.Event().wait()

    namewire.run(main())


def load(nameservice: str, target: str, metrics: bool, callers: int, seconds: float) -> None:
    import namewire
    from _rpcload import emit, run_async_callers
    from namewire_plus import first_call

    async def main() -> dict[str, Any]:
        node = namewire.Node(f"overhead-client-{os.getpid()}", metrics=metrics)
        async with node.serve(nameservice=nameservice, listen=None):
            await first_call(node, target)
            t0 = time.process_time()
            result = await run_async_callers(
                lambda: node.rpc_call(target, "plus", 1, 2), callers, seconds, 0.5
            )
            result["client_cpu_s"] = time.process_time() - t0
            return result

    emit(namewire.run(main()))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    nameservice: str, modes: tuple[str, ...], index: int, callers: int, seconds: float
) -> dict[str, dict[str, Any]]:
    """One point per mode in ``modes``; with two, both pairs run at the same time."""
    servers: dict[str, subprocess.Popen[str]] = {}
    loads: dict[str, subprocess.Popen[str]] = {}
    try:
        for mode in modes:
            servers[mode] = subprocess.Popen(
                pinned(SERVER_CPU, [PY, __file__, "serve", "--nameservice", nameservice, "--name",
                                    f"PlusServer-{mode}-{index}", "--metrics", mode]),
                stdout=subprocess.PIPE, text=True,
            )
        for mode, server in servers.items():
            assert server.stdout is not None
            if server.stdout.readline().strip() != "READY":
                raise SystemExit(f"server PlusServer-{mode}-{index} did not start")
        cpu0 = {mode: cpu_seconds(server.pid) for mode, server in servers.items()}
        for mode in modes:
            loads[mode] = subprocess.Popen(
                pinned(CLIENT_CPU, [PY, __file__, "load", "--nameservice", nameservice,
                                    "--target", f"PlusServer-{mode}-{index}", "--metrics", mode,
                                    "--callers", str(callers), "--seconds", str(seconds)]),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        done = {mode: load.communicate(timeout=seconds + 60) for mode, load in loads.items()}
        server_cpu = {mode: cpu_seconds(server.pid) - cpu0[mode] for mode, server in servers.items()}
    finally:
        for proc in (*loads.values(), *servers.values()):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    points = {}
    for mode, (out, err) in done.items():
        lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        if loads[mode].returncode != 0 or not lines:
            raise SystemExit(f"load against PlusServer-{mode}-{index} failed: {err[-2000:]}")
        result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
        if result.get("errors"):
            raise SystemExit(f"load against PlusServer-{mode}-{index}: {result['errors']} "
                             f"errors, {result['error']}")
        calls = result["calls_per_s"] * seconds
        # The server's CPU covers warm-up and set-up too; per call it is an upper bound.
        result["server_us_per_call"] = round(server_cpu[mode] * 1e6 / calls, 2)
        result["client_us_per_call"] = round(result.pop("client_cpu_s") * 1e6 / calls, 2)
        points[mode] = result
    return points


def run(callers: int, seconds: float, rounds: int, together: bool = False) -> dict[str, Any]:
    port = free_port()
    nameservice = f"tcp://127.0.0.1:{port}"
    ns = subprocess.Popen(
        pinned(SERVER_CPU, [PY, "-m", "namewire", "nameservice", "--listen", nameservice,
                            "--log-level", "WARNING"]),
    )
    points: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    try:
        wait_port(port, ns)
        for index in range(rounds):
            order = ("off", "on") if index % 2 == 0 else ("on", "off")
            measured = (
                measure(nameservice, order, index, callers, seconds) if together
                else {mode: measure(nameservice, (mode,), index, callers, seconds)[mode]
                      for mode in order}
            )
            for mode in order:
                point = measured[mode]
                points[mode].append(point)
                print(f"metrics {mode:>3} round {index + 1}: {point['calls_per_s']:,.0f} calls/s "
                      f"(p50 {point['p50_us']} us; server {point['server_us_per_call']} us, "
                      f"client {point['client_us_per_call']} us CPU per call)", file=sys.stderr)
    finally:
        ns.terminate()
        ns.wait(10)

    def median(mode: str, key: str) -> float:
        return float(statistics.median(p[key] for p in points[mode]))

    on, off = median("on", "calls_per_s"), median("off", "calls_per_s")
    # Each round's own on / off pair: the two ran minutes apart at most, so a machine whose load
    # changes during the run moves both; their median is the steadier figure on a shared machine.
    paired = [p_on["calls_per_s"] / p_off["calls_per_s"]
              for p_on, p_off in zip(points["on"], points["off"], strict=True)]
    return {
        "callers": callers,
        "seconds": seconds,
        "rounds": rounds,
        "together": together,
        "on_calls_per_s": on,
        "off_calls_per_s": off,
        "ratio": round(on / off, 3),
        "paired_ratio_median": round(statistics.median(paired), 3),
        "paired_ratios": [round(r, 3) for r in paired],
        "on_server_us_per_call": median("on", "server_us_per_call"),
        "off_server_us_per_call": median("off", "server_us_per_call"),
        "on_client_us_per_call": median("on", "client_us_per_call"),
        "off_client_us_per_call": median("off", "client_us_per_call"),
        "points": points,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    s = sub.add_parser("serve")
    s.add_argument("--nameservice", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--metrics", choices=("on", "off"), required=True)
    ld = sub.add_parser("load")
    ld.add_argument("--nameservice", required=True)
    ld.add_argument("--target", required=True)
    ld.add_argument("--metrics", choices=("on", "off"), required=True)
    ld.add_argument("--callers", type=int, required=True)
    ld.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--together", action="store_true",
                        help="run the on and off pairs at the same time in each round (the two "
                             "servers share CPU 0, the two callers CPU 1): whatever else loads "
                             "the machine loads both alike")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.role == "serve":
        serve(args.nameservice, args.name, args.metrics == "on")
    elif args.role == "load":
        load(args.nameservice, args.target, args.metrics == "on", args.callers, args.seconds)
    else:
        result = run(args.callers, args.seconds, args.rounds, args.together)
        text = json.dumps(result, indent=1)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text)
        print(f"metrics on / off: {result['ratio']:.3f} ({result['on_calls_per_s']:,.0f} / "
              f"{result['off_calls_per_s']:,.0f} calls/s, median of {args.rounds} rounds); "
              f"median of the rounds' own ratios {result['paired_ratio_median']:.3f} "
              f"({', '.join(f'{r:.2f}' for r in result['paired_ratios'])})")


if __name__ == "__main__":
    main()
