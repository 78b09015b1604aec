"""RPC by name over tls:// (mutual TLS) beside plain tcp://, in one run: the seed's Plus benchmark.

    .venv/bin/python bench/tls_rpc.py [--seconds 3] [--callers 1,1000]

For each transport: a name service and examples/plus_server.py (pinned to CPU 0, like bench/run.py's
servers) and clients/namewire_plus.py (CPU 1), with certificates made by `namewire certs` in a
temporary directory and passed through the environment (NAMEWIRE_TLS_*). Prints a Markdown table
with calls/s, p50 latency and the TLS/TCP ratio; writes bench/results/tls.json. bench/run.py runs it
as its "tls" section.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _procs import CLIENT_CPU, SERVER_CPU, ProcessSet, free_port, pinned, raise_nofile, wait_port

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable


def measure(transport: str, env: list[str], callers: int, seconds: float, logs: Path) -> dict[str, Any]:
    with ProcessSet(logs) as procs:
        ns_port, port = free_port(), free_port()
        ns_url = f"{transport}://127.0.0.1:{ns_port}"
        cli = ["env", *env, PY, "-m", "namewire"]
        ns = procs.start(f"tls-bench-{transport}-ns",
                         pinned(SERVER_CPU, [*cli, "nameservice", "--listen", ns_url]))
        wait_port(ns_port, ns)
        server = procs.start(f"tls-bench-{transport}-plus", pinned(SERVER_CPU, [
            *cli, "run", str(ROOT / "examples" / "plus_server.py"), "--nameservice", ns_url,
            "--listen", f"{transport}://127.0.0.1:{port}", "--no-unix", "--log-level", "WARNING",
        ]))
        wait_port(port, server)
        client = subprocess.run(
            pinned(CLIENT_CPU, ["env", *env, PY, str(BENCH / "clients" / "namewire_plus.py"),
                                "--nameservice", ns_url, "--callers", str(callers),
                                "--seconds", str(seconds), "--warmup", "0.5"]),
            capture_output=True, text=True, timeout=seconds + 60, check=False,
        )
        lines = [ln for ln in client.stdout.splitlines() if ln.startswith("RESULT ")]
        if not lines:
            raise SystemExit(f"{transport} client failed: {client.stderr[-500:]}")
        result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--callers", default="1,1000")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--json", type=Path, help="also write flat rows here (make bench's tls section)")
    args = parser.parse_args()
    raise_nofile()
    rows = []
    with tempfile.TemporaryDirectory(prefix="namewire-tls-bench-") as tmp:
        certs = Path(tmp)
        subprocess.run([PY, "-m", "namewire", "certs", str(certs), "--name", "node"],
                       check=True, capture_output=True)
        tls_env = [f"NAMEWIRE_TLS_CERT={certs / 'node.pem'}",
                   f"NAMEWIRE_TLS_KEY={certs / 'node-key.pem'}", f"NAMEWIRE_TLS_CA={certs / 'ca.pem'}"]
        for callers in (int(c) for c in args.callers.split(",")):
            tcp = measure("tcp", [], callers, args.seconds, certs / "logs")
            tls = measure("tls", tls_env, callers, args.seconds, certs / "logs")
            rows.append({"callers": callers, "tcp": tcp, "tls": tls,
                         "ratio": tls["calls_per_s"] / tcp["calls_per_s"]})
    print("| callers | tcp:// calls/s | tls:// (mTLS) calls/s | tls / tcp | p50 tcp / tls (us) |")
    print("|---|---|---|---|---|")
    for row in rows:
        tcp, tls = row["tcp"], row["tls"]
        print(f"| {row['callers']} | {tcp['calls_per_s']:,.0f} | {tls['calls_per_s']:,.0f} | "
              f"{row['ratio']:.2f}x | {tcp.get('p50_us', 0):.0f} / {tls.get('p50_us', 0):.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tls.json").write_text(json.dumps(rows, indent=2))
    if args.json is not None:
        flat = [{"callers": r["callers"], "tcp calls/s": round(r["tcp"]["calls_per_s"]),
                 "tls calls/s": round(r["tls"]["calls_per_s"]), "tls / tcp": round(r["ratio"], 3),
                 "p50 tcp us": round(r["tcp"].get("p50_us", 0)),
                 "p50 tls us": round(r["tls"].get("p50_us", 0))} for r in rows]
        args.json.write_text(json.dumps(flat, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
