"""Logging benchmark: namewire's asynchronous logging against a synchronous `logging.FileHandler`.

What it measures, for each mode, on a fresh event loop (uvloop where installed):

* ``records/s``: records logged divided by the time from the first log call until every record is
  written to the file and the handler closed (end to end, so queued records count only once written);
* ``calls/s``: records divided by the time the event loop spent making the calls (what the logging
  code costs the loop);
* ``worst stall`` and ``p99 stall``: a ticker task sleeps 1 ms in a loop while the records are logged;
  a tick's stall is how much later than 1 ms it woke up. The worst one is the longest time the loop
  could not run anything else.

The producer logs ``--records`` records (default 100,000) in batches of ``--batch`` (default 100),
yielding to the loop between batches, to a file in a temporary directory (``--dir`` to choose one).
Every mode writes the same text lines, including the node and process names (the baseline with the
stdlib `logging.Formatter`, namewire with its own, which renders the date once per second).

Modes: ``sync`` (``logging.FileHandler`` on the root logger, the baseline), ``namewire-block``
(`configure_logging` with ``overflow="block"``) and ``namewire-drop`` (``overflow="drop_oldest"``;
its ``dropped`` column counts records the queue discarded).

Sinks: ``file`` (a regular file: the page cache absorbs every write, the easy case for a synchronous
handler) and ``slow`` (a named pipe drained by another process at ``--slow-kbps`` KB/s, as a slow
disk, a full log shipper or a slow terminal would; the burst is ``--slow-records`` records, 10,000 by
default, which fits namewire's queue). The slow sink shows what the asynchronous pipeline is for:
the synchronous handler stalls the loop whenever the pipe is full.

Usage (stable CLI; the benchmark runner calls it):

    .venv/bin/python bench/logging_bench.py [--records N] [--batch N] [--queue-size N]
                                            [--modes sync,namewire-block,namewire-drop]
                                            [--sinks file,slow] [--slow-records N] [--slow-kbps N]
                                            [--dir DIR] [--json PATH]

Prints a Markdown table; ``--json PATH`` also writes ``{"benchmark": "logging", "params": {...},
"results": [{"sink", "mode", "records", "seconds", "records_per_s", "calls_per_s",
"worst_stall_ms", "p99_stall_ms", "dropped", "lines_written"}, ...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from namewire.runtime import ContextFilter, configure_logging, new_event_loop
from namewire.runtime._logging import TEXT_FORMAT

MODES = ("sync", "namewire-block", "namewire-drop")
SINKS = ("file", "slow")

# The slow sink's reader: drains a named pipe at a fixed rate and prints the lines it read.
_SLOW_READER = """
import os, sys, time
path, rate = sys.argv[1], float(sys.argv[2])
fd = os.open(path, os.O_RDONLY)
total = lines = 0
start = time.monotonic()
while True:
    data = os.read(fd, 4096)
    if not data:
        break
    total += len(data)
    lines += data.count(b"\\n")
    ahead = total / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
print(lines)
"""


class _SlowSink:
    """A named pipe in ``folder`` and the process draining it at ``kbps`` KB/s."""

    def __init__(self, folder: Path, name: str, kbps: float) -> None:
        self.path = folder / f"{name}.pipe"
        os.mkfifo(self.path)
        self._reader = subprocess.Popen(
            [sys.executable, "-c", _SLOW_READER, str(self.path), str(kbps * 1000)],
            stdout=subprocess.PIPE,
            text=True,
        )

    def lines(self) -> int:
        """Wait for the reader to reach end of file (writers closed) and return its line count."""
        out, _ = self._reader.communicate(timeout=600)
        os.remove(self.path)
        return int(out.strip() or 0)


class _Ticker:
    """Sleeps 1 ms at a time and records how late each wake-up is."""

    def __init__(self) -> None:
        self.stalls: list[float] = []
        self.running = True

    async def run(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
        clock = time.perf_counter
        while self.running:
            before = clock()
            await asyncio.sleep(0.001)
            self.stalls.append(max(0.0, clock() - before - 0.001))


async def _produce(records: int, batch: int) -> tuple[float, list[float]]:
    log = logging.getLogger("bench.producer")
    ticker = _Ticker()
    ticking = asyncio.create_task(ticker.run())
    await asyncio.sleep(0.01)  # let the ticker settle before measuring
    ticker.stalls.clear()
    busy = 0.0
    for start in range(0, records, batch):
        t0 = time.perf_counter()
        for i in range(start, min(start + batch, records)):
            log.info("request %d handled in %.3f ms for %s", i, 0.25, "client-42")
        busy += time.perf_counter() - t0
        await asyncio.sleep(0)
    ticker.running = False
    await ticking
    return busy, ticker.stalls


def _run_mode(
    mode: str,
    records: int,
    batch: int,
    queue_size: int,
    folder: Path,
    slow_kbps: float | None = None,
) -> dict[str, Any]:
    sink = _SlowSink(folder, mode, slow_kbps) if slow_kbps is not None else None
    path = sink.path if sink is not None else folder / f"{mode}.log"
    root = logging.getLogger()
    pipeline = None
    handler: logging.Handler | None = None
    if mode == "sync":
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    else:
        overflow: Literal["block", "drop_oldest"] = (
            "block" if mode == "namewire-block" else "drop_oldest"
        )
        pipeline = configure_logging("INFO", path, "text", queue_size=queue_size, overflow=overflow)
    loop = new_event_loop()
    try:
        started = time.perf_counter()
        busy, stalls = loop.run_until_complete(_produce(records, batch))
    finally:
        loop.close()
    if handler is not None:
        root.removeHandler(handler)
        handler.close()
    dropped = 0
    if pipeline is not None:
        pipeline.close()
        dropped = pipeline.dropped
    if sink is not None:
        lines = sink.lines()
        seconds = time.perf_counter() - started
    else:
        seconds = time.perf_counter() - started
        with open(path, "rb") as f:
            lines = sum(1 for _ in f)
        os.remove(path)
    ordered = sorted(stalls)
    return {
        "sink": "file" if sink is None else f"slow pipe {slow_kbps:g} KB/s",
        "mode": mode,
        "records": records,
        "seconds": round(seconds, 4),
        "records_per_s": round(records / seconds),
        "calls_per_s": round(records / busy),
        "worst_stall_ms": round(ordered[-1] * 1000, 2) if ordered else 0.0,
        "p99_stall_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 2) if ordered else 0.0,
        "median_stall_ms": round(statistics.median(ordered) * 1000, 3) if ordered else 0.0,
        "dropped": dropped,
        "lines_written": lines,
    }


def _table(results: list[dict[str, Any]]) -> str:
    head = (
        "| sink | mode | records | records/s (end to end) | calls/s (loop) | worst stall ms "
        "| p99 stall ms | dropped |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {r['sink']} | {r['mode']} | {r['records']:,} | {r['records_per_s']:,} "
        f"| {r['calls_per_s']:,} | {r['worst_stall_ms']} | {r['p99_stall_ms']} | {r['dropped']:,} |"
        for r in results
    ]
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--queue-size", type=int, default=10_000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--sinks", default=",".join(SINKS))
    parser.add_argument("--slow-records", type=int, default=10_000)
    parser.add_argument("--slow-kbps", type=float, default=500.0)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, dest="json_path")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    sinks = [k for k in args.sinks.split(",") if k]
    if set(sinks) - set(SINKS):
        parser.error(f"unknown sinks {sorted(set(sinks) - set(SINKS))}; choose from file, slow")
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for sink in sinks:
            for mode in modes:
                if sink == "file":
                    results.append(
                        _run_mode(mode, args.records, args.batch, args.queue_size, Path(folder))
                    )
                else:
                    results.append(
                        _run_mode(mode, args.slow_records, args.batch, args.queue_size,
                                  Path(folder), args.slow_kbps)
                    )
    print(_table(results))
    if args.json_path is not None:
        payload = {
            "benchmark": "logging",
            "params": {
                "records": args.records,
                "batch": args.batch,
                "queue_size": args.queue_size,
                "slow_records": args.slow_records,
                "slow_kbps": args.slow_kbps,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
            },
            "results": results,
        }
        args.json_path.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
