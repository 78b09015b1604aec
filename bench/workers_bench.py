"""Workers: parent -> worker channel throughput beside multiprocessing.Queue, and calls/s of the
seed's PlusServer run with ``--workers 1`` and ``--workers 2`` under the same load. One run.

    .venv/bin/python bench/workers_bench.py [--quick] [--rounds R] [--json OUT]

Channel: the parent sends N small values (``[i, "tick"]``) to one worker process, which counts
them and answers once it has all; the time from the first send to that answer, for a
`WorkerChannel` (maxsize 1000) and for a ``multiprocessing.Queue`` (maxsize 1000, spawn
context, the standard way to feed a worker), in the same run. Each side first sends one value
and waits for the worker to say it has it, so neither clock includes the worker's start. R rounds
(3 by default) alternate the two; the report gives every round and the median of each. Calls: a name service, ``namewire run
examples/plus_server.py --workers K``, and two client processes of bench/clients/namewire_plus.py
(100 callers each) calling ``PlusServer`` (the group) by name; calls/s is their sum.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import namewire  # noqa: E402
from namewire.workers import WorkerChannel, fork  # noqa: E402

VALUE = "tick"


# -- channel throughput ------------------------------------------------------------------------


async def count_values(values: WorkerChannel[Any], done: WorkerChannel[Any], n: int) -> None:
    await values.get()
    await done.put("ready")
    cpu = time.process_time()
    seen = 1
    async for _ in values:
        seen += 1
        if seen == n:
            await done.put([seen, time.process_time() - cpu])


async def namewire_channel(n: int) -> dict[str, float]:
    values: WorkerChannel[Any] = WorkerChannel(1000)
    done: WorkerChannel[Any] = WorkerChannel(2)
    worker = await fork(count_values, values, done, n)
    try:
        await values.put([-1, VALUE])  # the worker is up and linked before the clock starts
        assert await done.get() == "ready"
        started = time.perf_counter()
        cpu = time.process_time()
        for i in range(n - 1):
            await values.put([i, VALUE])
        count, worker_cpu = await done.get()
        assert count == n
        elapsed = time.perf_counter() - started
        return {"msgs_per_s": (n - 1) / elapsed,
                "sender_cpu_us": (time.process_time() - cpu) / (n - 1) * 1e6,
                "receiver_cpu_us": worker_cpu / (n - 1) * 1e6}
    finally:
        values.close()
        await worker.stop()


def queue_consumer(queue: Any, done: Any, n: int) -> None:
    queue.get()
    done.put("ready")
    cpu = time.process_time()
    for _ in range(n - 1):
        queue.get()
    done.put([n, time.process_time() - cpu])


def mp_queue(n: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue(1000)
    done = context.Queue()
    process = context.Process(target=queue_consumer, args=(queue, done, n))
    process.start()
    try:
        queue.put([-1, VALUE])
        assert done.get(timeout=60) == "ready"
        started = time.perf_counter()
        cpu = time.process_time()  # the feeder thread that pickles and writes is in this process
        for i in range(n - 1):
            queue.put([i, VALUE])
        count, worker_cpu = done.get(timeout=120)
        assert count == n
        elapsed = time.perf_counter() - started
        return {"msgs_per_s": (n - 1) / elapsed,
                "sender_cpu_us": (time.process_time() - cpu) / (n - 1) * 1e6,
                "receiver_cpu_us": worker_cpu / (n - 1) * 1e6}
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


# -- calls/s with --workers K --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {port}")


def calls_per_s(workers: int, seconds: float, clients: int = 2, callers: int = 100) -> float:
    cli = [sys.executable, "-m", "namewire"]
    port = free_port()
    ns_url = f"tcp://127.0.0.1:{port}"
    started: list[subprocess.Popen[str]] = []
    try:
        started.append(subprocess.Popen([*cli, "nameservice", "--listen", ns_url,
                                         "--log-level", "WARNING"], cwd=ROOT, text=True))
        wait_port(port)
        started.append(subprocess.Popen(
            [*cli, "run", str(ROOT / "examples" / "plus_server.py"), "--nameservice", ns_url,
             "--workers", str(workers), "--log-level", "WARNING"], cwd=ROOT, text=True))
        asyncio.run(_wait_members(ns_url, "PlusServer", workers))
        client = [sys.executable, str(BENCH / "clients" / "namewire_plus.py"), "--nameservice",
                  ns_url, "--callers", str(callers), "--seconds", str(seconds)]
        loads = [subprocess.Popen(client, cwd=ROOT, text=True, stdout=subprocess.PIPE)
                 for _ in range(clients)]
        started.extend(loads)
        total = 0.0
        for load in loads:
            out, _ = load.communicate(timeout=seconds + 60)
            if load.returncode != 0:
                raise RuntimeError(f"client exited with {load.returncode}: {out[-500:]}")
            line = next(x for x in out.splitlines() if x.startswith("RESULT "))
            total += float(json.loads(line.removeprefix("RESULT "))["calls_per_s"])
        return total
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(started):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _wait_members(ns_url: str, group: str, count: int) -> None:
    node = namewire.Node(f"bench-watch-{os.getpid()}")
    async with node.serve(nameservice=ns_url, listen=None):
        assert node.registry is not None
        deadline = time.monotonic() + 30
        while len(await node.registry.members(group)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{group}: fewer than {count} members after 30 s")
            await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    n = 100_000 if args.quick else 300_000
    seconds = 2.0 if args.quick else 5.0
    load_before = os.getloadavg()[0]
    rounds: list[dict[str, Any]] = []
    for _ in range(max(1, args.rounds)):
        channel = namewire.run(namewire_channel(n))
        assert channel is not None
        queue = mp_queue(n)
        rounds.append({"namewire": {k: round(v, 2) for k, v in channel.items()},
                       "mp_queue": {k: round(v, 2) for k, v in queue.items()},
                       "ratio": round(channel["msgs_per_s"] / queue["msgs_per_s"], 2)})
    load_after = os.getloadavg()[0]

    def median(side: str, key: str) -> float:
        return float(statistics.median(r[side][key] for r in rounds))

    def busier(side: str) -> float:
        return statistics.median(
            max(r[side]["sender_cpu_us"], r[side]["receiver_cpu_us"]) for r in rounds
        )

    one = calls_per_s(1, seconds)
    two = calls_per_s(2, seconds)
    ratios = [float(r["ratio"]) for r in rounds]
    result = {
        "channel": {
            "messages": n,
            "rounds": rounds,
            "load_average": [round(load_before, 2), round(load_after, 2)],
            "namewire": {k: median("namewire", k) for k in ("msgs_per_s", "sender_cpu_us",
                                                            "receiver_cpu_us")},
            "mp_queue": {k: median("mp_queue", k) for k in ("msgs_per_s", "sender_cpu_us",
                                                            "receiver_cpu_us")},
            "ratio_msgs_per_s": round(statistics.median(ratios), 2),
            "ratio_msgs_per_s_lowest": min(ratios),
            # Throughput is set by the busier side; its CPU per message is steadier than wall
            # time on a shared machine.
            "ratio_bottleneck_cpu": round(busier("mp_queue") / busier("namewire"), 2),
        },
        "group_calls": {"clients": 2, "callers_per_client": 100, "seconds": seconds,
                        "workers_1_calls_per_s": round(one), "workers_2_calls_per_s": round(two),
                        "ratio": round(two / one, 2)},
    }
    ch = result["channel"]
    calls = result["group_calls"]
    result["rows"] = [
        {"measure": f"channel, small messages/s (median of {len(rounds)} rounds; lowest ratio "
                    f"{ch['ratio_msgs_per_s_lowest']})",
         "namewire": round(ch["namewire"]["msgs_per_s"]),
         "baseline": round(ch["mp_queue"]["msgs_per_s"]), "baseline is": "multiprocessing.Queue",
         "ratio": ch["ratio_msgs_per_s"]},
        {"measure": "channel, busier side's CPU µs/msg (median)",
         "namewire": round(busier("namewire"), 2), "baseline": round(busier("mp_queue"), 2),
         "baseline is": "multiprocessing.Queue", "ratio": ch["ratio_bottleneck_cpu"]},
        {"measure": "PlusServer calls/s, --workers 2", "namewire": calls["workers_2_calls_per_s"],
         "baseline": calls["workers_1_calls_per_s"], "baseline is": "--workers 1",
         "ratio": calls["ratio"]},
    ]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
