"""Handshakes per second (tcp, shared secret, TLS, mutual TLS) and echo over tls:// beside tcp://.

    .venv/bin/python bench/tls_handshakes.py [--seconds 2] [--rounds 3] [--conns 1,100]

Handshakes: a name service (``namewire nameservice``, pinned to CPU 0 like bench/run.py's servers)
listens with one of four securities; a client process (CPU 1) runs ``--openers`` tasks that each
connect a `Session`, wait for the hello to complete (`Session.wait_open`: with a shared secret
that includes the challenge-response both ways, with TLS the TLS handshake) and close, again and
again. The client does its side of every handshake too, so the rows give the share of a CPU the
server and the client used in the measured window: which side was the bottleneck.

Echo: this script serves itself (``--serve-echo URL``, CPU 0) with `namewire.listen` and an echo
handler; the one Python client (``--client echo``, CPU 1) opens N connections with
`namewire.connect` and sends 64-byte packets one at a time on each, over tcp:// and over tls://
(mutual TLS). Same client code for both rows; only the URL and ``tls=`` differ.

Every point is measured ``--rounds`` times, rounds one after another (the machine's noise then
hits all points alike); a row is the median round, its "vs tcp" the median of the ratios to the
tcp row measured in the same round. Certificates come from `namewire certs` in a temporary
directory. Prints a Markdown table; writes flat rows to ``--json PATH`` (bench/run.py's
"handshakes" section).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from _procs import CLIENT_CPU, SERVER_CPU, ProcessSet, free_port, pinned, raise_nofile, wait_port

BENCH = Path(__file__).resolve().parent
PY = sys.executable
SECURITIES = ("tcp", "secret", "tls", "mtls")
PACKET = b"x" * 64


# --- what each side is given --------------------------------------------------------------------

def server_env(security: str, certs: Path) -> list[str]:
    """The name service's environment for one security (`Security.from_env` reads it)."""
    key = [f"NAMEWIRE_TLS_CERT={certs / 'node.pem'}", f"NAMEWIRE_TLS_KEY={certs / 'node-key.pem'}"]
    return {
        "tcp": [],
        "secret": [f"NAMEWIRE_SECRET_FILE={certs / 'secret'}"],
        "tls": key,  # no CA: the listener asks for no client certificate
        "mtls": [*key, f"NAMEWIRE_TLS_CA={certs / 'ca.pem'}"],
    }[security]


def client_security(security: str, certs: Path) -> Any:
    from namewire import Security, TlsConfig

    ca = str(certs / "ca.pem")
    if security == "secret":
        return Security(secret=(certs / "secret").read_bytes().strip())
    if security == "tls":
        return Security(tls=TlsConfig(ca=ca))  # verifies the server, presents nothing
    if security == "mtls":
        return Security(tls=TlsConfig(cert=str(certs / "node.pem"),
                                      key=str(certs / "node-key.pem"), ca=ca))
    return Security()


def scheme(security: str) -> str:
    return "tls" if security in ("tls", "mtls") else "tcp"


# --- client processes (run pinned, print one RESULT line) ---------------------------------------

class _Quiet:
    """A `SessionHandler` for connections that only say hello."""

    def session_opened(self, session: Any) -> None: ...
    def message_received(self, session: Any, payload: Any, size: int) -> None: ...
    def call_received(self, session: Any, call: Any) -> None: ...
    def cancel_received(self, session: Any, call_id: int) -> None: ...
    def session_closed(self, session: Any, reason: BaseException | None) -> None: ...


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Window:
    """The measured window: its length and the share of a CPU the server and this client used."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.wall, self.mine = time.perf_counter(), time.process_time()
        self.server = cpu_seconds(server_pid)

    def summary(self, latencies: list[float]) -> dict[str, Any]:
        """Completions per second, their median latency, and both CPU shares."""
        elapsed = time.perf_counter() - self.wall
        latencies.sort()
        p50 = latencies[len(latencies) // 2] * 1e6 if latencies else 0.0
        return {"per_s": len(latencies) / elapsed, "p50_us": p50,
                "server_cpu": (cpu_seconds(self.server_pid) - self.server) / elapsed,
                "client_cpu": (time.process_time() - self.mine) / elapsed}


async def handshakes(url: str, security: Any, openers: int, seconds: float, warmup: float,
                     server_pid: int) -> dict[str, Any]:
    from namewire.transport import Session, connect_session

    handler = _Quiet()
    counted = False
    latencies: list[float] = []

    async def one() -> None:
        session = Session("HandshakeBench", handler, ping_interval=None,
                          auth=security.authenticator("HandshakeBench", accepting=False),
                          handshake_timeout=security.handshake_timeout)
        await connect_session(url, session, timeout=10.0, tls=security.tls)
        await session.wait_open()
        session.close()
        await session.wait_closed()

    async def opener(stop: float) -> None:
        while (start := time.perf_counter()) < stop:
            await one()
            if counted:
                latencies.append(time.perf_counter() - start)

    begin = time.perf_counter()
    task = asyncio.gather(*(opener(begin + warmup + seconds) for _ in range(openers)))
    await asyncio.sleep(warmup)
    counted, window = True, Window(server_pid)
    await task
    return window.summary(latencies)


async def echo(url: str, security: Any, conns: int, seconds: float, warmup: float,
               server_pid: int) -> dict[str, Any]:
    import namewire

    socks = [await namewire.connect(url, tls=security.tls, timeout=10.0) for _ in range(conns)]
    counted = False
    latencies: list[float] = []

    async def pinger(sock: Any, stop: float) -> None:
        while (start := time.perf_counter()) < stop:
            await sock.send(PACKET)
            if await sock.recv() is None:
                raise SystemExit("the echo server closed the connection")
            if counted:
                latencies.append(time.perf_counter() - start)

    begin = time.perf_counter()
    task = asyncio.gather(*(pinger(s, begin + warmup + seconds) for s in socks))
    await asyncio.sleep(warmup)
    counted, window = True, Window(server_pid)
    await task
    result = window.summary(latencies)
    for sock in socks:
        await sock.close()
    return result


def client_main(args: argparse.Namespace) -> int:
    import namewire

    security = client_security(args.security, args.certs)
    if args.client == "handshakes":
        work = handshakes(args.url, security, args.openers, args.seconds, args.warmup,
                          args.server_pid)
    else:
        work = echo(args.url, security, args.conns_one, args.seconds, args.warmup, args.server_pid)
    result = namewire.run(work)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


async def serve_echo(url: str, tls: Any) -> None:
    import namewire

    async def handler(sock: Any) -> None:
        while (packet := await sock.recv()) is not None:
            await sock.send(packet)

    async with await namewire.listen(url, handler, tls=tls) as listener:
        await listener.serve_forever()


def serve_main(args: argparse.Namespace) -> int:
    import namewire
    from namewire import TlsConfig

    tls = None
    if args.serve_echo.startswith("tls://"):
        tls = TlsConfig(cert=str(args.certs / "node.pem"), key=str(args.certs / "node-key.pem"),
                        ca=str(args.certs / "ca.pem"))
    namewire.run(serve_echo(args.serve_echo, tls))
    return 0


# --- the driver -----------------------------------------------------------------------------------

def run_client(argv: list[str], seconds: float, what: str, server: subprocess.Popen[bytes]
               ) -> dict[str, Any]:
    """The RESULT of a client process run against ``server``."""
    argv = [*argv, "--server-pid", str(server.pid)]
    done = subprocess.run(pinned(CLIENT_CPU, [PY, str(Path(__file__)), *argv]),
                          capture_output=True, text=True, timeout=seconds + 120, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{what} client failed: {done.stderr[-800:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def measure_handshakes(security: str, args: argparse.Namespace, certs: Path
                       ) -> dict[str, Any]:
    with ProcessSet(certs / "logs") as procs:
        port = free_port()
        url = f"{scheme(security)}://127.0.0.1:{port}"
        ns = procs.start(f"handshakes-{security}-ns", pinned(SERVER_CPU, [
            "env", *server_env(security, certs), PY, "-m", "namewire", "nameservice",
            "--listen", url]))
        wait_port(port, ns)
        return run_client(["--client", "handshakes", "--url", url, "--security", security,
                           "--certs", str(certs), "--openers", str(args.openers),
                           "--seconds", str(args.seconds), "--warmup", str(args.warmup)],
                          args.seconds, f"{security} handshake", ns)


def measure_echo(transport: str, conns: int, args: argparse.Namespace, certs: Path
                 ) -> dict[str, Any]:
    with ProcessSet(certs / "logs") as procs:
        port = free_port()
        url = f"{transport}://127.0.0.1:{port}"
        server = procs.start(f"echo-{transport}", pinned(SERVER_CPU, [
            PY, str(Path(__file__)), "--serve-echo", url, "--certs", str(certs)]))
        wait_port(port, server)
        return run_client(["--client", "echo", "--url", url,
                           "--security", "mtls" if transport == "tls" else "tcp",
                           "--certs", str(certs), "--conns-one", str(conns),
                           "--seconds", str(args.seconds), "--warmup", str(args.warmup)],
                          args.seconds, f"{transport} echo", server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every point; medians")
    parser.add_argument("--openers", type=int, default=16, help="concurrent handshake openers")
    parser.add_argument("--conns", default="1,100", help="echo connections, comma-separated")
    parser.add_argument("--json", type=Path, help="also write flat rows here (make bench)")
    # Internal: the pinned client and echo server processes this script starts.
    parser.add_argument("--client", choices=("handshakes", "echo"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-echo", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--security", choices=SECURITIES, help=argparse.SUPPRESS)
    parser.add_argument("--certs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--conns-one", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_nofile()
    if args.client:
        return client_main(args)
    if args.serve_echo:
        return serve_main(args)
    conns = [int(c) for c in args.conns.split(",")]
    # (label, baseline label, measure): the baseline is measured in the same round, just before.
    points: list[tuple[str, str, Callable[[Path], dict[str, Any]]]] = [
        (f"handshakes/s, {s}, {args.openers} openers", f"handshakes/s, tcp, {args.openers} openers",
         partial(measure_handshakes, s, args)) for s in SECURITIES
    ]
    for n in conns:
        for transport, name in (("tcp", "tcp"), ("tls", "tls (mTLS)")):
            points.append((f"echo round trips/s, {name}, {n} conns",
                           f"echo round trips/s, tcp, {n} conns",
                           partial(measure_echo, transport, n, args)))
    rounds: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="namewire-handshake-bench-") as tmp:
        certs = Path(tmp)
        subprocess.run([PY, "-m", "namewire", "certs", str(certs), "--name", "node"],
                       check=True, capture_output=True)
        for _ in range(args.rounds):
            got: dict[str, dict[str, Any]] = {}
            for label, base, measure in points:
                got[label] = measure(certs)
                got[label]["ratio"] = got[label]["per_s"] / got[base]["per_s"]
            rounds.append(got)
    rows = []
    for label, _, _ in points:
        # The round with the median rate gives the row; the ratio is the median of same-round ones.
        runs = sorted((r[label] for r in rounds), key=lambda g: float(g["per_s"]))
        mid = runs[len(runs) // 2]
        rows.append({"what": label, "per s": round(mid["per_s"]),
                     "vs tcp": round(statistics.median(g["ratio"] for g in runs), 3),
                     "p50 us": round(mid["p50_us"]),
                     "server cpu %": round(100 * mid["server_cpu"]),
                     "client cpu %": round(100 * mid["client_cpu"])})
    print(f"median of {args.rounds} rounds; load average {os.getloadavg()[0]:.1f} at the end")
    print("| measure | per s | vs tcp | p50 (us) | server CPU | client CPU |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['what']} | {row['per s']:,} | {row['vs tcp']:.2f}x | {row['p50 us']:,} | "
              f"{row['server cpu %']}% | {row['client cpu %']}% |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
