"""What counting adds to serving one call, without sockets: `Node.call_received` of a sync
``plus(1, 2)`` on a node with metrics on and one with metrics off, in one process.

    .venv/bin/python bench/metrics_dispatch.py [--calls 300000] [--rounds 5]

The session is a stand-in that only takes the reply, so what is measured is the node's dispatch
(function look-up, the call, the reply hand-off) and, with metrics on, the clock read and the
record. Each round reports the best of three repeats for each mode; CPU noise from other
processes inflates both, so compare within a round.
"""

from __future__ import annotations

import argparse
import time
import timeit
from typing import Any

import namewire
from namewire.wire import Call


class Session:
    peer_name = "Caller"
    read_at = time.perf_counter()
    served_stats: Any = None

    def reply(self, call_id: int, result: Any) -> None:
        return None


def node(metrics: bool) -> namewire.Node:
    n = namewire.Node("PlusServer", metrics=metrics)

    @n.function
    def plus(a: int, b: int) -> int:
        return a + b

    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    on, off = node(True), node(False)
    session: Any = Session()
    call = Call(1, "plus", [1, 2], {"d": 30000, "r": 5})
    for _ in range(args.rounds):
        times = {}
        for label, n in (("off", off), ("on", on)):
            best = min(timeit.repeat(lambda n=n: n.call_received(session, call),
                                     number=args.calls, repeat=3))
            times[label] = best / args.calls * 1e9
        print(f"dispatch of one served call: off {times['off']:.0f} ns, on {times['on']:.0f} ns "
              f"(+{times['on'] - times['off']:.0f} ns)")


if __name__ == "__main__":
    main()
