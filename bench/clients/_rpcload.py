"""The shared load loop of the RPC benchmark clients: N callers, each calling in a loop.

Every client (namewire, Pyro5, rpyc, grpcio) measures the same way, so their numbers compare:

- all callers are set up (connected) before the clock starts;
- the run lasts ``warmup + seconds``; a call counts when it *starts* after the warm-up and
  *finishes* before the end, so calls/s is ``counted / seconds`` and connection set-up, first-call
  look-ups and import-time JIT warm-up never enter it;
- the latency of every counted call is taken with ``time.perf_counter_ns`` and reported as p50 / p99
  in microseconds;
- a caller stops at its first error (a benchmark that errs is reported as failed, not averaged).

The result is one JSON object printed on stdout as the last line, prefixed ``RESULT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallerTally:
    """What one caller saw inside the measuring window."""

    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""


def _record_error(tally: CallerTally, exc: BaseException) -> None:
    tally.errors += 1
    if not tally.first_error:
        tally.first_error = f"{type(exc).__name__}: {exc}"[:300]


def summarize(
    tallies: list[CallerTally], callers: int, seconds: float, **extra: Any
) -> dict[str, Any]:
    """Merges the callers' tallies into calls/s and latency percentiles (microseconds)."""
    lat = sorted(x for t in tallies for x in t.latencies_ns)
    errors = sum(t.errors for t in tallies)
    first_error = next((t.first_error for t in tallies if t.first_error), "")

    def pct(p: float) -> float | None:
        if not lat:
            return None
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] / 1000.0, 1)

    return {
        "callers": callers,
        "seconds": seconds,
        "calls": len(lat),
        "calls_per_s": round(len(lat) / seconds, 1),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "errors": errors,
        "error": first_error,
        **extra,
    }


async def run_async_callers(
    call: Callable[[], Awaitable[Any]], callers: int, seconds: float, warmup: float, expect: Any = 3
) -> dict[str, Any]:
    """Runs ``callers`` coroutines on the running loop, each awaiting ``call()`` in a loop.

    Every answer is compared with ``expect`` (``plus(1, 2)`` is 3): a wrong one is an error.
    """
    now = time.perf_counter_ns()
    start_ns = now + int(warmup * 1e9)
    end_ns = start_ns + int(seconds * 1e9)

    async def caller(tally: CallerTally) -> None:
        clock = time.perf_counter_ns
        keep = tally.latencies_ns.append
        while True:
            t0 = clock()
            try:
                answer = await call()
            except Exception as exc:  # any failure ends this caller and is reported
                _record_error(tally, exc)
                return
            t1 = clock()
            if answer != expect:
                _record_error(tally, ValueError(f"got {answer!r}, expected {expect!r}"))
                return
            if t1 >= end_ns:
                return
            if t0 >= start_ns:
                keep(t1 - t0)

    tallies = [CallerTally() for _ in range(callers)]
    await asyncio.gather(*(caller(t) for t in tallies))
    return summarize(tallies, callers, seconds)


def run_thread_callers(
    connect: Callable[[], Callable[[], Any]],
    callers: int,
    seconds: float,
    warmup: float,
    expect: Any = 3,
) -> dict[str, Any]:
    """Runs ``callers`` threads; each calls ``connect()`` once for its own stub, then loops on it.

    Every answer is compared with ``expect``, as in `run_async_callers`.

    Thread-per-caller is how Pyro5 and rpyc are meant to be driven concurrently: a proxy or a
    connection is not shared between threads.
    """
    tallies = [CallerTally() for _ in range(callers)]
    window: list[int] = []

    def open_window() -> None:
        # Runs once, when the last caller has its stub: set-up time never counts.
        now = time.perf_counter_ns()
        window.extend([now + int(warmup * 1e9), now + int((warmup + seconds) * 1e9)])

    ready = threading.Barrier(callers + 1, action=open_window)

    def caller(tally: CallerTally) -> None:
        try:
            stub = connect()
        except Exception as exc:  # reported, the other callers carry on
            _record_error(tally, exc)
            ready.wait()
            return
        ready.wait()
        start_ns, end_ns = window
        clock = time.perf_counter_ns
        keep = tally.latencies_ns.append
        while True:
            t0 = clock()
            try:
                answer = stub()
            except Exception as exc:
                _record_error(tally, exc)
                return
            t1 = clock()
            if answer != expect:
                _record_error(tally, ValueError(f"got {answer!r}, expected {expect!r}"))
                return
            if t1 >= end_ns:
                return
            if t0 >= start_ns:
                keep(t1 - t0)

    # Small stacks: a thousand threads at the default 8 MiB each would only waste address space.
    threading.stack_size(256 * 1024)
    threads = [threading.Thread(target=caller, args=(t,), daemon=True) for t in tallies]
    for th in threads:
        th.start()
    ready.wait()
    for th in threads:
        th.join()
    return summarize(tallies, callers, seconds)


def peer_parser(description: str) -> argparse.ArgumentParser:
    """The command line every RPC peer shares: ``server|client PORT [--callers --seconds --warmup]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("port", type=int)
    parser.add_argument("--callers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    return parser


def emit(result: dict[str, Any]) -> None:
    """Prints the result line the runner parses."""
    print("RESULT " + json.dumps(result), flush=True)
