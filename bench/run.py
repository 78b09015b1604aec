"""namewire's benchmark suite: echo, RPC, memory per idle connection, logging; peers side by side.

    .venv/bin/python bench/run.py            # full run, under 10 minutes
    .venv/bin/python bench/run.py --quick    # about a minute: shorter points, fewer of them
    .venv/bin/python bench/run.py --only echo,rpc --seconds 2

Writes bench/results/latest.{md,json,png} and prints the Markdown table; a full run also copies
it into bench/README.md.  Progress goes to stderr, one line per measurement.

Every process started here is killed when its section ends, whatever happens (`ProcessSet`);
every measurement has a timeout; a peer that is missing or fails becomes a row that says so and
the run carries on.  Servers run on CPU 0 and clients on CPU 1 (taskset) so that a server never
shares its core with its load.  bench/README.md says what is measured and how.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _procs import (
    CLIENT_CPU,
    SERVER_CPU,
    PeerFailed,
    ProcessSet,
    can_pin,
    children_cpu,
    cpu_seconds,
    free_port,
    log_of,
    machine_busy_seconds,
    open_fds,
    pid_listening_on,
    pinned,
    raise_nofile,
    run_captured,
    tail,
    vm_rss_kb,
    wait_port,
)
from _report import compute_ratios, to_markdown, update_readme, write_chart

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BUILD = BENCH / "build"
LOGS = BUILD / "logs"
RESULTS = BENCH / "results"
PEERS = BENCH / "peers"
PY = sys.executable
LOADGEN = BUILD / "loadgen"
RPCGEN = BUILD / "rpcgen"
IDLE_CONNS = 10_000
# Server capacity: (connections, calls in flight on each) the C RPC load generator keeps up.
CAPACITY_LOADS = ((1, 1), (1, 1000), (100, 10))


class Progress:
    """One line per step on stderr: ``[ 7/31  0:42] echo node.js @100: 90,604 rt/s``."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()

    def step(self, text: str) -> None:
        self.done += 1
        elapsed = int(time.monotonic() - self.t0)
        print(
            f"[{self.done:>2}/{self.total}  {elapsed // 60}:{elapsed % 60:02d}] {text}",
            file=sys.stderr,
            flush=True,
        )

    def say(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.t0)
        print(f"[      {elapsed // 60}:{elapsed % 60:02d}] {text}", file=sys.stderr, flush=True)


def parse_result_line(stdout: str) -> dict[str, Any]:
    """The JSON object on the last ``RESULT`` line a client printed."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise PeerFailed("client printed no RESULT line")


def namewire_cli() -> list[str]:
    """How to invoke the namewire command with this interpreter."""
    return [PY, "-m", "namewire"]


def namewire_node_missing() -> str | None:
    """Why the namewire RPC rows cannot run, or None when they can."""
    probe = subprocess.run(
        [PY, "-c", "import namewire; namewire.Node; import namewire.cli"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return "namewire.Node or the namewire CLI is not importable yet: " + tail_text(probe.stderr)
    if not (ROOT / "examples" / "plus_server.py").exists():
        return "examples/plus_server.py does not exist yet"
    return None


def tail_text(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-2:])[:300]


# --- echo ----------------------------------------------------------------------------------------


def native_sockets() -> bool:
    """Whether namewire's sockets run on its C reactor in the venv the servers run in."""
    probe = "from namewire.transport._native_stream import available; print(available())"
    done = subprocess.run([PY, "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() == "True"


def echo_servers() -> list[dict[str, Any]]:
    """The echo peers: key, label, how to start one on a port, and why it cannot run (if so)."""
    lua_ok = shutil.which("lua5.4") is not None and (
        subprocess.run(["lua5.4", "-e", 'require("luv")'], capture_output=True).returncode == 0
    )
    try:
        import uvloop  # noqa: F401

        uvloop_missing = None
    except ImportError:
        uvloop_missing = "uvloop not installed"
    nw_example = ROOT / "examples" / "echo_server.py"
    native = native_sockets()
    servers: list[dict[str, Any]] = [
        {
            "key": "namewire",
            "label": "namewire (framed msgpack echo"
            + (", C reactor)" if native else "; C reactor not built, pure asyncio)"),
            "argv": lambda p: [PY, str(nw_example), "--listen", f"tcp://127.0.0.1:{p}"],
            "missing": None if nw_example.exists() else "examples/echo_server.py not written yet",
        },
        {
            # The same server on the pure-asyncio sockets (uvloop transports): what a machine
            # without the C reactor gets, and what the reactor is measured against.
            "key": "namewire_asyncio",
            "label": "namewire, pure-asyncio sockets",
            "argv": lambda p: [
                "env",
                "NAMEWIRE_NATIVE=0",
                PY,
                str(nw_example),
                "--listen",
                f"tcp://127.0.0.1:{p}",
            ],
            "missing": "the C reactor is not built: the row above is this one"
            if not native
            else None,
        },
        {
            "key": "node",
            "label": "node.js net (raw)",
            "argv": lambda p: ["node", str(PEERS / "echo.js"), str(p)],
            "missing": None if shutil.which("node") else "node not installed",
        },
        {
            "key": "luv",
            "label": "luv on Lua 5.4 (raw)",
            "argv": lambda p: ["lua5.4", str(PEERS / "echo.lua"), str(p)],
            "missing": None if lua_ok else "lua5.4 with luv not installed",
        },
        {
            "key": "asyncio",
            "label": "asyncio Protocol (raw)",
            "argv": lambda p: [PY, str(PEERS / "asyncio_echo.py"), str(p)],
            "missing": None,
        },
        {
            "key": "uvloop",
            "label": "asyncio Protocol on uvloop (raw)",
            "argv": lambda p: [PY, str(PEERS / "asyncio_echo.py"), str(p), "--uvloop"],
            "missing": uvloop_missing,
        },
        {
            "key": "c_epoll",
            "label": "C epoll (raw)",
            "argv": lambda p: [str(BUILD / "echo_epoll"), str(p)],
            "missing": None
            if (BUILD / "echo_epoll").exists()
            else "bench/build/echo_epoll not built",
        },
    ]
    return servers


def run_echo(
    conns_list: Sequence[int],
    seconds: float,
    warmup: float,
    quiet_wait: float,
    progress: Progress,
    notes: list[str],
) -> dict[str, Any]:
    """Every echo server, measured at each connection count by the C load generator.

    All servers are started up front (idle ones cost nothing) and the points are interleaved:
    each connection count visits every server in turn, so a burst of unrelated work on the
    machine spreads over the servers instead of sinking one of them.
    """
    rows: list[dict[str, Any]] = []
    loadgen_missing = None if LOADGEN.exists() else "bench/build/loadgen not built"
    servers = echo_servers()
    with ProcessSet(LOGS) as procs:
        running: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        for server in servers:
            row: dict[str, Any] = {"key": server["key"], "label": server["label"], "points": {}}
            rows.append(row)
            why = server["missing"] or loadgen_missing
            if why:
                row["skipped"] = why
                notes.append(f"echo {server['label']}: skipped, {why}")

        def ensure_running(server: dict[str, Any]) -> tuple[subprocess.Popen[bytes], int]:
            # (Re)start: a server that died on one point still gets the next one.
            proc, port = running.get(server["key"], (None, 0))
            if proc is None or proc.poll() is not None:
                if proc is not None:
                    procs.stop(proc)
                port = free_port()
                proc = procs.start(
                    f"echo-{server['key']}", pinned(SERVER_CPU, server["argv"](port))
                )
                running[server["key"]] = (proc, port)
                wait_port(port, proc)
            return proc, port

        # Start everything first, so that no server's start-up (imports, JIT) lands in a point.
        for server, row in zip(servers, rows, strict=True):
            if "skipped" not in row:
                try:
                    ensure_running(server)
                except PeerFailed:
                    pass  # reported on each of its points, where the start is tried again
        for conns in conns_list:
            for server, row in zip(servers, rows, strict=True):
                label = f"echo {server['label']} @{conns}"
                if "skipped" in row:
                    progress.step(f"{label}: skipped ({row['skipped']})")
                    continue
                try:
                    proc, port = ensure_running(server)
                    argv = [
                        str(LOADGEN),
                        "-c",
                        str(conns),
                        "-d",
                        str(seconds),
                        "-w",
                        str(warmup),
                        "127.0.0.1",
                        str(port),
                    ]
                    done, usage = measure_point(proc.pid, argv, seconds + warmup + 45, quiet_wait)
                    result = parse_result_line(done.stdout)
                    if result.get("errors"):
                        raise PeerFailed(
                            f"{result['errors']} connection error(s), first: {result['error']}"
                        )
                    if proc.poll() is not None:
                        raise PeerFailed(f"server exited during the run: {tail(log_of(proc))}")
                    if not result.get("round_trips"):
                        raise PeerFailed("no echo came back within the window")
                    point: dict[str, Any] = {
                        k: result[k]
                        for k in ("rps", "rps_median", "round_trips", "seconds", "p50_us", "p99_us")
                        if k in result
                    }
                    point.update(usage)
                    row["points"][str(conns)] = point
                    progress.step(f"{label}: {point['rps']:,.0f} rt/s ({describe_usage(usage)})")
                except PeerFailed as exc:
                    row["points"][str(conns)] = {"error": str(exc)}
                    notes.append(f"{label}: failed, {exc}")
                    progress.step(f"{label}: FAILED ({exc})")
    return {
        "connections": list(conns_list),
        "payload": 'msgpack ["hahaha"], 8 bytes + 4-byte length',
        "rows": rows,
    }


def measure_point(
    server_pid: int | Sequence[int], client_argv: Sequence[str], timeout: float,
    quiet_wait: float,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Runs one client to completion (pinned to the client CPU) and accounts for the CPU.

    Waits up to ``quiet_wait`` seconds for the machine to calm down first.  Returns the client's
    output and the CPU shares over the point: the server's, the client's (from the reaped
    child's rusage) and everyone else's (the noise), as fractions of one CPU.
    """
    idle_before = wait_for_quiet(quiet_wait)
    pids = [server_pid] if isinstance(server_pid, int) else list(server_pid)

    def server_seconds() -> float:
        return sum(cpu_seconds(pid) for pid in pids)

    cpu0, busy0, kids0, t0 = (
        server_seconds(),
        machine_busy_seconds(),
        children_cpu(),
        time.monotonic(),
    )
    done = run_captured(pinned(CLIENT_CPU, client_argv), timeout=timeout)
    wall = time.monotonic() - t0
    server = (server_seconds() - cpu0) / wall
    client = (children_cpu() - kids0) / wall
    other = max(0.0, (machine_busy_seconds() - busy0) / wall - server - client)
    usage = {
        "server_cpu": round(server, 3),
        "client_cpu": round(client, 3),
        "other_cpu": round(other, 3),
        "other_cpu_before": round(idle_before, 3),
    }
    if done.returncode != 0 and "RESULT " not in done.stdout:
        raise PeerFailed(f"client exit {done.returncode}: {tail_text(done.stderr or done.stdout)}")
    return done, usage


def cpu_per_call(usage: dict[str, Any], rate: float) -> dict[str, float]:
    """Server and client CPU microseconds per call (or round trip) at ``rate`` per second.

    The shares are over the client's whole run (connect and warm-up included), so this slightly
    overstates the cost per counted call; it is the same for every row, and says which side limits.
    """
    if not rate:
        return {}
    return {
        "server_us_per_call": round(usage["server_cpu"] / rate * 1e6, 2),
        "client_us_per_call": round(usage["client_cpu"] / rate * 1e6, 2),
    }


def wait_for_quiet(max_wait: float, threshold: float = 0.25, sample: float = 0.25) -> float:
    """Waits (at most ``max_wait`` s) until other work uses under ``threshold`` of a CPU.

    Nothing of ours is loaded between points, so what the machine does meanwhile is someone
    else's.  Returns the last load seen, recorded beside the point.
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy0, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(sample)
        load = (machine_busy_seconds() - busy0) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= deadline:
            return load


def describe_usage(usage: dict[str, Any]) -> str:
    return (
        f"CPU server {usage['server_cpu']:.0%}, client {usage['client_cpu']:.0%}, "
        f"other {usage['other_cpu']:.0%}"
    )


# --- RPC -----------------------------------------------------------------------------------------


# The RPC systems, in table order: (key, label, peer script, environment, Python module it
# needs, binary it needs, reference row?).  A reference row is a yardstick, not a peer: it is
# left out of "the best peer".  A new peer is one line here and a script in bench/peers/ with
# the `server PORT` / `client PORT --callers ...` command line of `_rpcload.peer_parser`.
RPC_PEERS: list[tuple[str, str, str, dict[str, str], str, str | None, bool]] = [
    ("probe", "bare msgpack-RPC probe on uvloop (reference)", "msgpack_rpc_probe.py", {},
     "uvloop", None, True),
    ("nats", "NATS request/reply (nats-server + nats-py)", "nats_plus.py", {}, "nats",
     "nats-server", False),
    ("zmq", "pyzmq ROUTER / DEALER (asyncio client)", "zmq_plus.py", {}, "zmq", None, False),
    ("pyro5", "Pyro5 (thread pool)", "pyro5_plus.py", {}, "Pyro5", None, False),
    ("pyro5_mux", "Pyro5 (multiplex)", "pyro5_plus.py", {"PYRO_SERVERTYPE": "multiplex"},
     "Pyro5", None, False),
    ("rpyc", "rpyc (threaded)", "rpyc_plus.py", {}, "rpyc", None, False),
    ("grpc", "grpcio (asyncio, generic handler)", "grpc_plus.py", {}, "grpc", None, False),
]


def rpc_systems() -> list[dict[str, Any]]:
    """The RPC systems: key, label, and how to start the server and the client."""
    systems: list[dict[str, Any]] = [{"key": "namewire", "label": "namewire (by name)"}]
    for key, label, script, env, module, binary, reference in RPC_PEERS:
        systems.append(
            {"key": key, "label": label, "script": PEERS / script, "env": env,
             "module": module, "binary": binary, "reference": reference}
        )
    return systems


def run_rpc(
    callers_list: Sequence[int],
    seconds: float,
    warmup: float,
    quiet_wait: float,
    progress: Progress,
    notes: list[str],
) -> dict[str, Any]:
    """Each RPC system: one server (pinned to CPU 0), one client process per caller count."""
    rows: list[dict[str, Any]] = []
    for system in rpc_systems():
        row: dict[str, Any] = {"key": system["key"], "label": system["label"], "points": {}}
        if system.get("reference"):
            row["reference"] = True
        rows.append(row)
        missing = rpc_missing(system)
        if missing:
            row["skipped"] = missing
            notes.append(f"RPC {system['label']}: skipped, {missing}")
            for callers in callers_list:
                progress.step(f"rpc {system['label']} @{callers}: skipped ({missing})")
            continue
        with ProcessSet(LOGS) as procs:
            try:
                client_for, server_pids = start_rpc_server(system, procs)
            except PeerFailed as exc:
                for callers in callers_list:
                    row["points"][str(callers)] = {"error": f"server: {exc}"}
                    progress.step(f"rpc {system['label']} @{callers}: FAILED (server: {exc})")
                notes.append(f"RPC {system['label']}: server failed, {exc}")
                continue
            for callers in callers_list:
                label = f"rpc {system['label']} @{callers}"
                try:
                    argv = client_for(callers, seconds, warmup)
                    done, usage = measure_point(server_pids, argv, seconds + warmup + 90, quiet_wait)
                    result = parse_result_line(done.stdout)
                    if result.get("errors"):
                        raise PeerFailed(
                            f"{result['errors']} failed call(s), first: {result['error']}"
                        )
                    if not result.get("calls_per_s") or result.get("p50_us") is None:
                        # A peer that completed no call in the window has no rate to print.
                        raise PeerFailed("no call completed within the measurement window")
                    result.pop("error", None)
                    result.update(usage)
                    result.update(cpu_per_call(usage, result["calls_per_s"]))
                    row["points"][str(callers)] = result
                    progress.step(
                        f"{label}: {result['calls_per_s']:,.0f} calls/s, "
                        f"p50 {result['p50_us']:,.0f} µs, p99 {result['p99_us']:,.0f} µs "
                        f"({describe_usage(usage)})"
                    )
                except PeerFailed as exc:
                    row["points"][str(callers)] = {"error": str(exc)}
                    notes.append(f"{label}: failed, {exc}")
                    progress.step(f"{label}: FAILED ({exc})")
    return {"callers": list(callers_list), "call": "plus(1, 2)", "rows": rows}


def rpc_missing(system: dict[str, Any]) -> str | None:
    """Why an RPC system cannot run here, or None."""
    if system["key"] == "namewire":
        return namewire_node_missing()
    try:
        __import__(system["module"])
    except ImportError:
        return f"{system['module']} not installed (pip install -e '.[bench]')"
    if system["binary"] and shutil.which(system["binary"]) is None:
        return f"{system['binary']} not installed (bench/setup.sh installs it)"
    return None


def start_namewire_plus(
    procs: ProcessSet, section: str, port: int
) -> tuple[str, subprocess.Popen[bytes]]:
    """A name service and the seed's PlusServer on ``port``, both pinned; returns (ns URL, server)."""
    ns_port = free_port()
    ns_url = f"tcp://127.0.0.1:{ns_port}"
    ns = procs.start(
        f"{section}-namewire-nameservice",
        pinned(SERVER_CPU, [*namewire_cli(), "nameservice", "--listen", ns_url]),
    )
    wait_port(ns_port, ns)
    server = procs.start(
        f"{section}-namewire-plus", pinned(SERVER_CPU, plus_server_argv(ns_url, port))
    )
    return ns_url, server


def start_rpc_server(
    system: dict[str, Any], procs: ProcessSet
) -> tuple[Callable[[int, float, float], list[str]], list[int]]:
    """Starts the system's server(s); returns the client's argv builder and the server side's
    pids (a broker and its responder both count: NATS)."""
    if system["key"] == "namewire":
        port = free_port()
        ns_url, server = start_namewire_plus(procs, "rpc", port)
        wait_port(port, server)
        client = str(BENCH / "clients" / "namewire_plus.py")
        return (
            lambda n, s, w: [
                PY,
                client,
                "--nameservice",
                ns_url,
                "--callers",
                str(n),
                "--seconds",
                str(s),
                "--warmup",
                str(w),
            ],
            [pid_listening_on(server.pid, port)],
        )
    port = free_port()
    # Environment switches (PYRO_SERVERTYPE) reach both sides through `env`, like a user's shell.
    env = ["env", *(f"{k}={v}" for k, v in system["env"].items())]
    server = procs.start(
        f"rpc-{system['key']}",
        pinned(SERVER_CPU, [*env, PY, str(system["script"]), "server", str(port)]),
    )
    wait_port(port, server)
    script = str(system["script"])
    return (
        lambda n, s, w: [
            *env,
            PY,
            script,
            "client",
            str(port),
            "--callers",
            str(n),
            "--seconds",
            str(s),
            "--warmup",
            str(w),
        ],
        sorted({server.pid, pid_listening_on(server.pid, port)}),
    )


def plus_server_argv(ns_url: str, port: int) -> list[str]:
    """The seed's PlusServer under ``namewire run``, on a fixed TCP port and TCP only.

    ``--no-unix`` keeps namewire on the same transport as the peers it is compared with.
    """
    return [
        *namewire_cli(),
        "run",
        str(ROOT / "examples" / "plus_server.py"),
        "--nameservice",
        ns_url,
        "--listen",
        f"tcp://127.0.0.1:{port}",
        "--no-unix",
        "--log-level",
        "WARNING",
    ]


# --- server capacity: the C RPC load generator against namewire and against the C RPC server ----


def run_capacity(
    seconds: float, warmup: float, quiet_wait: float, progress: Progress, notes: list[str]
) -> dict[str, Any]:
    """namewire's PlusServer and the C RPC server (the ceiling), each driven by `rpcgen` with
    namewire's own hello, call and reply frames, at each of `CAPACITY_LOADS`."""
    servers = [
        ("namewire", "namewire PlusServer (C reactor)" if native_sockets() else
         "namewire PlusServer (pure asyncio)", namewire_node_missing()),
        ("c_rpc", "C RPC server (rpc_epoll, the ceiling)",
         None if (BUILD / "rpc_epoll").exists() else "bench/build/rpc_epoll not built"),
    ]
    rows: list[dict[str, Any]] = []
    for key, label, missing in servers:
        row: dict[str, Any] = {"key": key, "label": label, "points": {}}
        rows.append(row)
        why = missing or (None if RPCGEN.exists() else "bench/build/rpcgen not built")
        if why:
            row["skipped"] = why
            notes.append(f"capacity {label}: skipped, {why}")
            for conns, depth in CAPACITY_LOADS:
                progress.step(f"capacity {label} {conns}x{depth}: skipped ({why})")
            continue
        with ProcessSet(LOGS) as procs:
            port = free_port()
            try:
                if key == "namewire":
                    _, server = start_namewire_plus(procs, "capacity", port)
                else:
                    server = procs.start(
                        "capacity-c-rpc", pinned(SERVER_CPU, [str(BUILD / "rpc_epoll"), str(port)])
                    )
                wait_port(port, server)
                pid = pid_listening_on(server.pid, port)
            except PeerFailed as exc:
                row["skipped"] = f"server failed: {exc}"
                notes.append(f"capacity {label}: server failed, {exc}")
                for conns, depth in CAPACITY_LOADS:
                    progress.step(f"capacity {label} {conns}x{depth}: FAILED ({exc})")
                continue
            for conns, depth in CAPACITY_LOADS:
                name = f"{conns}x{depth}"
                text = f"capacity {label} {name}"
                argv = [str(RPCGEN), "-c", str(conns), "-q", str(depth), "-d", str(seconds),
                        "-w", str(warmup), "127.0.0.1", str(port)]
                try:
                    done, usage = measure_point(pid, argv, seconds + warmup + 45, quiet_wait)
                    result = parse_result_line(done.stdout)
                    if result.get("errors"):
                        raise PeerFailed(f"{result['errors']} error(s), first: {result['error']}")
                    if not result.get("calls"):
                        raise PeerFailed("no reply within the window")
                    result.update(usage)
                    result.update(cpu_per_call(usage, result["calls_per_s"]))
                    row["points"][name] = result
                    progress.step(
                        f"{text}: {result['calls_per_s']:,.0f} calls/s, p50 "
                        f"{result['p50_us']:,.0f} µs ({describe_usage(usage)})"
                    )
                except PeerFailed as exc:
                    row["points"][name] = {"error": str(exc)}
                    notes.append(f"{text}: failed, {exc}")
                    progress.step(f"{text}: FAILED ({exc})")
    return {
        "loads": [f"{c}x{d}" for c, d in CAPACITY_LOADS],
        "call": "plus(1, 2) as namewire call frames, hello first",
        "rows": rows,
    }


# --- memory --------------------------------------------------------------------------------------


def run_memory(conns: int, progress: Progress, notes: list[str]) -> dict[str, Any]:
    """RSS per idle connection: ``conns`` connections, each sending a namewire hello, then idle."""
    rows: list[dict[str, Any]] = []
    missing_nw = namewire_node_missing()
    targets: list[tuple[str, str, str | None]] = [
        ("namewire", "namewire node (PlusServer)", missing_nw),
        (
            "node",
            "node.js net echo (reference)",
            None if shutil.which("node") else "node not installed",
        ),
    ]
    for key, label, missing in targets:
        if missing or not LOADGEN.exists():
            why = missing or "bench/build/loadgen not built"
            rows.append({"key": key, "label": label, "skipped": why})
            notes.append(f"memory {label}: skipped, {why}")
            progress.step(f"memory {label}: skipped ({why})")
            continue
        try:
            with ProcessSet(LOGS) as procs:
                row = measure_idle(key, conns, procs)
            row.update(key=key, label=label)
            rows.append(row)
            progress.step(
                f"memory {label}: {row['per_conn_bytes']:,.0f} B per idle connection "
                f"({row['open']:,} held)"
            )
        except PeerFailed as exc:
            rows.append({"key": key, "label": label, "error": str(exc)})
            notes.append(f"memory {label}: failed, {exc}")
            progress.step(f"memory {label}: FAILED ({exc})")
    return {
        "conns": conns,
        "rows": rows,
        "method": "(VmRSS after - VmRSS before) / connections held, from /proc/PID/status",
    }


def measure_idle(key: str, conns: int, procs: ProcessSet) -> dict[str, Any]:
    """Starts the server, takes RSS, opens the idle connections, takes RSS again."""
    port = free_port()
    if key == "namewire":
        _, server = start_namewire_plus(procs, "mem", port)
    else:
        server = procs.start(
            "mem-node", pinned(SERVER_CPU, ["node", str(PEERS / "echo.js"), str(port)])
        )
    wait_port(port, server)
    pid = pid_listening_on(server.pid, port)
    time.sleep(1.0)  # let start-up allocation (imports, registration) settle
    before = vm_rss_kb(pid)
    fds_before = open_fds(pid)

    idle = procs.start(
        f"mem-{key}-idle",
        pinned(
            CLIENT_CPU,
            [str(LOADGEN), "-i", "-n", "-c", str(conns), "-d", "120", "127.0.0.1", str(port)],
        ),
        stdin=True,
    )
    deadline = time.monotonic() + 60
    while "READY" not in log_of(idle).read_text(errors="replace"):
        if idle.poll() is not None:
            raise PeerFailed(f"idle client exited: {tail(log_of(idle))}")
        if time.monotonic() > deadline:
            raise PeerFailed("idle client not ready after 60 s")
        time.sleep(0.1)
    after = wait_rss_settled(pid)
    fds_after = open_fds(pid)
    assert idle.stdin is not None
    idle.stdin.close()  # tells the idle client to let go and print its tally
    try:
        idle.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise PeerFailed("idle client did not exit after stdin closed") from None
    tally = parse_result_line(log_of(idle).read_text(errors="replace"))
    held = int(tally["open"])
    if held <= 0:
        raise PeerFailed(f"the server held no connection: {tally.get('error')}")
    per_conn = (after - before) * 1024 / held
    return {
        "rss_before_kb": before,
        "rss_after_kb": after,
        "per_conn_bytes": round(per_conn),
        "open": held,
        "closed": int(tally["closed"]),
        "answered": int(tally.get("answered", 0)),
        "fds_added": fds_after - fds_before,
        "client_error": tally.get("error", ""),
    }


def wait_rss_settled(pid: int, timeout: float = 10.0) -> int:
    """RSS once it stops growing: the server may still be accepting and reading hellos."""
    time.sleep(1.0)
    last = vm_rss_kb(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = vm_rss_kb(pid)
        if abs(now - last) <= max(64, last // 200):
            return now
        last = now
    return last


# --- logging -------------------------------------------------------------------------------------


def run_logging(quick: bool, progress: Progress, notes: list[str]) -> dict[str, Any]:
    """Runs bench/logging_bench.py (a colleague's) if it exists and returns its JSON."""
    script = BENCH / "logging_bench.py"
    if not script.exists():
        progress.step("logging: skipped (bench/logging_bench.py does not exist)")
        notes.append("logging: skipped, bench/logging_bench.py does not exist")
        return {"skipped": "bench/logging_bench.py does not exist"}
    out = BUILD / "logging.json"
    out.unlink(missing_ok=True)
    argv = [PY, str(script), "--json", str(out)]
    try:
        helptext = subprocess.run(
            [PY, str(script), "--help"], capture_output=True, text=True, timeout=30
        ).stdout
        if quick and "--quick" in helptext:
            argv.append("--quick")
        elif quick and "--records" in helptext:
            argv += ["--records", "30000"]
        done = run_captured(argv, timeout=240)
        if done.returncode != 0:
            raise PeerFailed(f"exit {done.returncode}: {tail_text(done.stderr or done.stdout)}")
        data = json.loads(out.read_text())
    except (PeerFailed, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        notes.append(f"logging: failed, {exc}")
        progress.step(f"logging: FAILED ({exc})")
        return {"error": str(exc)}
    progress.step("logging: done")
    return data if isinstance(data, dict) else {"rows": data}


# --- versions and machine ------------------------------------------------------------------------


def command_version(argv: Sequence[str]) -> str:
    """First line of a ``--version`` style command, or "not installed"."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].strip() if text and done.returncode == 0 else "not installed"


def versions() -> dict[str, str]:
    """The version of every peer and tool the numbers depend on."""
    found: dict[str, str] = {
        "Python": platform.python_version(),
        "node": command_version(["node", "--version"]),
        # "Lua 5.4.4  Copyright (C) ...": keep the version number only.
        "Lua": " ".join(command_version(["lua5.4", "-v"]).split()[1:2]) or "not installed",
        "luv": command_version(["lua5.4", "-e", 'print(require("luv").version_string())']),
        "gcc": command_version(["gcc", "-dumpfullversion"]),
    }
    # "nats-server: v2.9.10": keep the version only.
    nats_version = command_version(["nats-server", "--version"])
    found["nats-server"] = nats_version.split()[-1] if ": " in nats_version else nats_version
    for dist in ("namewire", "uvloop", "msgpack", "nats-py", "pyzmq", "Pyro5", "rpyc", "grpcio",
                 "matplotlib"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def machine() -> str:
    """CPU model, CPU count, memory and kernel, in one line."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    distro = ""
    try:
        distro = "Debian " + Path("/etc/debian_version").read_text().strip()
    except OSError:
        distro = platform.system()
    return (
        f"{model}, {os.cpu_count()} CPUs, {mem_kb / 1024 / 1024:.0f} GiB, {distro}, "
        f"Linux {platform.release()}"
    )


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "namewire", "examples"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (done.stdout.strip() or "unknown") + (" + uncommitted changes" if dirty else "")


# --- the sections ------------------------------------------------------------------------------


@dataclass
class Run:
    """What every section is given: the run's settings, and where it reports progress and notes."""

    quick: bool
    seconds: float
    warmup: float
    quiet_wait: float
    idle_conns: int
    notes: list[str]
    progress: Progress = field(default_factory=lambda: Progress(0))

    @property
    def echo_conns(self) -> list[int]:
        # Quick keeps to about a minute: no single-connection echo, and 100 RPC callers (1000
        # threads take Pyro5 and rpyc seconds to start). The full run is the one that judges.
        return [100, 1000] if self.quick else [1, 10, 100, 1000]

    @property
    def rpc_callers(self) -> list[int]:
        return [1, 100] if self.quick else [1, 100, 1000]


# A section: how many progress lines it prints, and the function that runs it and returns its
# part of the results (under its name).  Sections run in this order; `--only` picks some.
Section = tuple[Callable[[Run], int], Callable[[Run], dict[str, Any]]]


def script_section(
    script: Path,
    quick_argv: Sequence[str] = (),
    timeout: float = 240,
    full_argv: Sequence[str] = (),
) -> Section:
    """A section made of one script that writes its results as JSON to ``--json PATH``.

    This is how a small bench script joins the suite: one line in `SECTIONS`, e.g.
    ``"tls": script_section(BENCH / "tls_bench.py", ["--quick"])``.  The report shows its JSON
    as a table (a list of flat dicts, or one under "rows"); ``quick_argv`` is added in quick runs,
    ``full_argv`` in full ones.
    """

    def run(r: Run) -> dict[str, Any]:
        name = script.stem
        if not script.exists():
            r.progress.step(f"{name}: skipped ({script.name} does not exist)")
            r.notes.append(f"{name}: skipped, {script.name} does not exist")
            return {"skipped": f"{script.name} does not exist"}
        BUILD.mkdir(parents=True, exist_ok=True)
        out = BUILD / f"{name}.json"
        out.unlink(missing_ok=True)
        argv = [PY, str(script), "--json", str(out), *(quick_argv if r.quick else full_argv)]
        try:
            done = run_captured(argv, timeout=timeout)
            if done.returncode != 0:
                raise PeerFailed(f"exit {done.returncode}: {tail_text(done.stderr or done.stdout)}")
            data = json.loads(out.read_text())
        except (PeerFailed, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            r.notes.append(f"{name}: failed, {exc}")
            r.progress.step(f"{name}: FAILED ({exc})")
            return {"error": str(exc)}
        r.progress.step(f"{name}: done")
        return data if isinstance(data, dict) else {"rows": data}

    return (lambda r: 1, run)


SECTIONS: dict[str, Section] = {
    "echo": (
        lambda r: len(echo_servers()) * len(r.echo_conns),
        lambda r: run_echo(r.echo_conns, r.seconds, r.warmup, r.quiet_wait, r.progress, r.notes),
    ),
    "rpc": (
        lambda r: len(rpc_systems()) * len(r.rpc_callers),
        lambda r: run_rpc(r.rpc_callers, r.seconds, r.warmup, r.quiet_wait, r.progress, r.notes),
    ),
    "capacity": (
        lambda r: 2 * len(CAPACITY_LOADS),
        lambda r: run_capacity(r.seconds, r.warmup, r.quiet_wait, r.progress, r.notes),
    ),
    "memory": (lambda r: 2, lambda r: run_memory(r.idle_conns, r.progress, r.notes)),
    "logging": (lambda r: 1, lambda r: run_logging(r.quick, r.progress, r.notes)),
    # Plus by name with the session's early writes on and off: whether both sides work at once.
    "turns": script_section(
        BENCH / "turns.py", ["--seconds", "2", "--rounds", "1"], timeout=600, full_argv=["--rounds", "3"]
    ),
    # Plus calls/s with metrics on and off, both pairs at the same time in each round, so that
    # other load on the machine weighs on both alike (docs/observability.md).
    "metrics": script_section(
        BENCH / "metrics_overhead.py", ["--seconds", "2", "--rounds", "2", "--together"],
        timeout=300, full_argv=["--together"],
    ),
    # namewire.db beside aiosqlite and asyncpg (docs/db.md).
    "db": script_section(
        BENCH / "db_bench.py",
        ["--seconds", "0.5", "--repeat", "1", "--callers", "16"],
        timeout=420,
        full_argv=["--seconds", "1.5", "--repeat", "2"],
    ),
    # RPC by name over tls:// (mutual TLS) beside tcp:// at 1 and 1000 callers (docs/security.md).
    "tls": script_section(
        BENCH / "tls_rpc.py",
        ["--seconds", "1", "--out", str(BUILD)],
        timeout=600,
        full_argv=["--seconds", "3"],
    ),
    # Handshakes/s (tcp, secret, TLS, mTLS); echo over tls:// beside tcp:// (docs/security.md).
    "handshakes": script_section(
        BENCH / "tls_handshakes.py",
        ["--seconds", "1", "--rounds", "1"],
        timeout=420,
        full_argv=["--seconds", "2", "--rounds", "3"],
    ),
    # Worker channels beside multiprocessing.Queue; --workers 1 against 2 (docs/workers.md).
    "workers": script_section(BENCH / "workers_bench.py", ["--quick"], timeout=300),
}


# --- main ----------------------------------------------------------------------------------------


def load_average() -> str:
    """The 1-minute load average from /proc/loadavg."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "unknown"


def write_outputs(results: dict[str, Any], out: Path, readme: bool) -> None:
    """latest.json, latest.md and latest.png in ``out``; the Markdown also to stdout."""
    markdown = to_markdown(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "latest.md").write_text(markdown)
    chart_error = write_chart(results, out / "latest.png")
    if chart_error:
        print(chart_error, file=sys.stderr)
    if readme:
        for path in (BENCH / "README.md", BENCH.parent / "README.md"):
            if not update_readme(path, markdown):
                print(f"{path} has no result markers; not updated", file=sys.stderr)
    print(markdown)


def run_setup() -> None:
    """bench/setup.sh: installs and builds what is missing (idempotent); failures are not fatal."""
    env = dict(os.environ, PYTHON=PY)
    try:
        done = subprocess.run(["bash", str(BENCH / "setup.sh")], env=env, timeout=900)
    except subprocess.TimeoutExpired:
        print("bench/setup.sh timed out; carrying on with what is there", file=sys.stderr)
        return
    if done.returncode != 0:
        print(
            "bench/setup.sh reported problems (above); missing peers will be skipped",
            file=sys.stderr,
        )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=os.environ.get("NAMEWIRE_BENCH_PROG"), description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="about a minute: short points, fewer")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})",
    )
    parser.add_argument("--seconds", type=float, help="seconds per point (default 5, quick 1)")
    parser.add_argument("--no-setup", action="store_true", help="skip bench/setup.sh")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="results folder (default bench/results)"
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: redraw latest.md/.png in --out from a results JSON",
    )
    args = parser.parse_args(argv)
    if args.render:
        stored: dict[str, Any] = json.loads(args.render.read_text())
        stored["ratios"] = compute_ratios(stored)
        write_outputs(
            stored, args.out, readme=args.out == RESULTS and stored["meta"]["mode"] == "full"
        )
        return 0

    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: every child is stopped, partial results
    # are written. Children run in their own sessions, so only this process gets the signal.
    signal.signal(signal.SIGTERM, _interrupt)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    if not args.no_setup:
        run_setup()
    nofile = raise_nofile()
    notes: list[str] = []
    run = Run(
        quick=args.quick,
        seconds=seconds,
        warmup=0.3 if args.quick else 0.5,
        # Before each point, wait this long at most for other work on the machine to quieten down.
        quiet_wait=0.5 if args.quick else 2.0,
        idle_conns=min(IDLE_CONNS, nofile - 100),
        notes=notes,
    )
    progress = run.progress = Progress(sum(SECTIONS[name][0](run) for name in sections))
    mode = "quick" if args.quick else "full"
    progress.say(
        f"namewire bench, {mode} run: {', '.join(sections)}; {seconds:g} s per point; "
        f"{'server on CPU 0, client on CPU 1' if can_pin() else 'not pinned'}"
    )

    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": machine(),
            "mode": mode,
            "sections": sections,
            "seconds_per_point": seconds,
            "warmup_seconds": run.warmup,
            "quiet_wait_seconds": run.quiet_wait,
            "pinning": "servers on CPU 0, clients on CPU 1 (taskset)"
            if can_pin()
            else "not pinned",
            "namewire_commit": git_commit(),
            # Counts runnable threads, so a 1000-thread client raises it too: a rough hint only.
            "loadavg_start": load_average(),
        },
        "versions": versions(),
    }
    if run.idle_conns < IDLE_CONNS and "memory" in sections:
        notes.append(f"memory: only {run.idle_conns} idle connections (descriptor limit {nofile})")
    try:
        for name in sections:
            results[name] = SECTIONS[name][1](run)
    except KeyboardInterrupt:
        notes.append("interrupted: the tables hold what was measured before the interrupt")
        progress.say("interrupted; writing what was measured")
    results["ratios"] = compute_ratios(results)
    results["notes"] = notes
    results["meta"]["elapsed_seconds"] = round(time.monotonic() - progress.t0, 1)
    results["meta"]["loadavg_end"] = load_average()

    full = not args.quick and set(sections) == set(SECTIONS) and args.out == RESULTS
    write_outputs(results, args.out, readme=full)
    progress.say(
        f"done in {results['meta']['elapsed_seconds']:.0f} s; results in {args.out}/latest.*"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
