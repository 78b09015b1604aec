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

Usage (stable CLI; the benchmark runner calls it):

    .venv/bin/python bench/logging_bench.py [--records N] [--batch N] [--queue-size N]
                                            [--modes sync,namewire-block,namewire-drop]
                                            [--dir DIR] [--json PATH]

Prints a Markdown table; ``--json PATH`` also writes ``{"benchmark": "logging", "params": {...},
"results": [{"mode", "records", "seconds", "records_per_s", "calls_per_s", "worst_stall_ms",
"p99_stall_ms", "dropped", "lines_written"}, ...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from namewire.runtime import ContextFilter, configure_logging, new_event_loop
from namewire.runtime._logging import TEXT_FORMAT

MODES = ("sync", "namewire-block", "namewire-drop")


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


def _run_mode(mode: str, records: int, batch: int, queue_size: int, folder: Path) -> dict[str, Any]:
    path = folder / f"{mode}.log"
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
    seconds = time.perf_counter() - started
    with open(path, "rb") as f:
        lines = sum(1 for _ in f)
    os.remove(path)
    ordered = sorted(stalls)
    return {
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
        "| mode | records/s (end to end) | calls/s (loop) | worst stall ms | p99 stall ms "
        "| dropped |\n|---|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {r['mode']} | {r['records_per_s']:,} | {r['calls_per_s']:,} | {r['worst_stall_ms']} "
        f"| {r['p99_stall_ms']} | {r['dropped']:,} |"
        for r in results
    ]
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--queue-size", type=int, default=10_000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, dest="json_path")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for mode in modes:
            results.append(_run_mode(mode, args.records, args.batch, args.queue_size, Path(folder)))
    print(_table(results))
    if args.json_path is not None:
        payload = {
            "benchmark": "logging",
            "params": {
                "records": args.records,
                "batch": args.batch,
                "queue_size": args.queue_size,
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
