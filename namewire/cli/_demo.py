"""``namewire demo`` (a name service, PlusServer and the Plus benchmark client as three processes)
and ``namewire bench`` (the benchmark suite, which runs from a checkout)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ._common import fail

# A checkout: the examples and the benchmark suite sit beside the package.
_ROOT = Path(__file__).resolve().parents[2]
# An install from a wheel or sdist: the examples ship inside the package (setup.py).
_SHIPPED = Path(__file__).resolve().parents[1] / "_examples"

_BENCH_HELP = """\
The benchmark suite (bench/run.py) compares namewire with node.js, luv, asyncio, C, Pyro5, rpyc and
grpcio, pinned to CPUs. It runs from a namewire checkout (it builds a C load generator and installs
its peers), not from an installed package: clone the repository, then `make bench`
(or `namewire bench [--quick] [--only SECTIONS] [--seconds N]` inside it).
"""


def _examples() -> Path | None:
    """Where the demo's programs are: inside the package, else in the checkout."""
    for folder in (_SHIPPED, _ROOT / "examples"):
        if (folder / "plus_server.py").is_file() and (folder / "plus_client.py").is_file():
            return folder
    return None


def add_parsers(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="start a name service, PlusServer and the Plus benchmark client",
        description="Starts a name service, PlusServer (examples/plus_server.py: one remote "
                    "function, plus(a, b)) and the Plus benchmark client (examples/plus_client.py: "
                    "many coroutines calling plus(1, 2) by name) as three processes, prints calls/s "
                    "each second, then stops everything.",
    )
    demo.add_argument("--callers", type=int, default=1000, help="concurrent callers (default 1000)")
    demo.add_argument("--seconds", type=int, default=5, help="how long the client runs (default 5)")
    demo.set_defaults(handler=cmd_demo)

    bench = commands.add_parser(
        "bench", help="run the benchmark suite (bench/run.py, from a checkout) against the peers",
        description=_BENCH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.set_defaults(handler=lambda args: run_bench([]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"the name service exited with status {proc.returncode}", 1)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    fail(f"the name service did not listen on port {port} within {timeout}s", 1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cmd_demo(args: argparse.Namespace) -> int:
    examples = _examples()
    if examples is None:
        fail(f"this install has no demo programs (neither {_SHIPPED} nor {_ROOT / 'examples'}); "
             "reinstall namewire", 1)
    url = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "NAMEWIRE_NAMESERVICE": url}
    python = sys.executable
    procs: list[subprocess.Popen[bytes]] = []
    print(f"demo: name service on {url}", flush=True)
    try:
        ns = subprocess.Popen([python, "-m", "namewire", "nameservice", "--listen", url,
                               "--log-level", "WARNING"], env=env)
        procs.append(ns)
        _wait_listening(int(url.rsplit(":", 1)[1]), ns)
        print("demo: starting PlusServer (examples/plus_server.py)", flush=True)
        server = subprocess.Popen([python, "-m", "namewire", "run",
                                   str(examples / "plus_server.py"), "--log-level", "WARNING"],
                                  env=env)
        procs.append(server)
        print(f"demo: Plus benchmark, {args.callers} callers for {args.seconds}s "
              "(examples/plus_client.py)", flush=True)
        print(f"demo: one call = a full rpc_call('PlusServer', 'plus', 1, 2) by name (found through "
              f"the name service); all 3 processes share this machine's {os.cpu_count()} CPUs, "
              "unpinned; the pinned comparison with other frameworks is `make bench` "
              "(bench/README.md in a checkout)", flush=True)
        client = subprocess.Popen([python, str(examples / "plus_client.py"),
                                   "--callers", str(args.callers), "--seconds", str(args.seconds),
                                   "--wait", "10"],
                                  env=env)
        procs.append(client)
        status = client.wait(args.seconds + 60)
    except KeyboardInterrupt:
        status = 130
    finally:
        for proc in reversed(procs):
            _stop(proc)
    print(f"demo: stopped ({'ok' if status == 0 else f'client exit status {status}'})")
    return status


def run_bench(options: list[str]) -> int:
    """Run bench/run.py with ``options``; returns its exit status."""
    script = _ROOT / "bench" / "run.py"
    if not script.is_file():
        if {"-h", "--help"} & set(options):
            print("usage: namewire bench [options of bench/run.py]\n\n" + _BENCH_HELP, end="")
            return 0
        fail("the benchmark suite runs from a namewire checkout (it needs bench/ beside the "
             f"package, and there is no {script}); clone the repository and run `make bench`", 1)
    # bench/run.py names itself after this variable in its usage line (it also runs on its own).
    env = {**os.environ, "NAMEWIRE_BENCH_PROG": "namewire bench"}
    return subprocess.call([sys.executable, str(script), *options], env=env)
