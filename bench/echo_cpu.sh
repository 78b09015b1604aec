#!/bin/bash
# CPU time per echo of one echo server (user and system apart, from /proc), driven by the C load
# generator: steadier than round trips/s on a shared, noisy machine, and it shows where the time
# goes (a loopback echo costs about 4.5 us of kernel time per packet whoever serves it).
# usage: bench/echo_cpu.sh CONNS SECONDS SERVER-ARGV...   ({PORT} in the argv is replaced)
#   bench/echo_cpu.sh 100 5 .venv/bin/python examples/echo_server.py --listen tcp://127.0.0.1:{PORT}
#   bench/echo_cpu.sh 100 5 bench/build/echo_epoll {PORT}
# Needs bench/build/loadgen (make bench or bench/setup.sh builds it) and SECONDS >= 3.
set -eu
cd "$(dirname "$0")/.."
CONNS=$1 SECONDS_=$2
shift 2
PORT=$((20000 + RANDOM % 20000))
argv=("${@//\{PORT\}/$PORT}")
OUT=$(mktemp)
taskset -c 0 "${argv[@]}" >/dev/null 2>&1 & SV=$!
trap 'kill $SV 2>/dev/null; rm -f "$OUT"' EXIT
sleep 1
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
taskset -c 1 bench/build/loadgen -c "$CONNS" -d "$SECONDS_" -w 1 127.0.0.1 $PORT >"$OUT" 2>/dev/null & CL=$!
sleep 1.5
read -r u0 s0 < <(ticks $SV); t0=$(date +%s.%N)
sleep $((SECONDS_ - 1))
read -r u1 s1 < <(ticks $SV); t1=$(date +%s.%N)
wait $CL
python3 - "$OUT" "$u0" "$s0" "$u1" "$s1" "$t0" "$t1" <<'PY'
import json, os, sys
out, u0, s0, u1, s1, t0, t1 = sys.argv[1], *map(float, sys.argv[2:])
line = next(l for l in open(out) if l.startswith("RESULT "))
r = json.loads(line[len("RESULT "):])
echoes = r["rps"] * (t1 - t0)
hz = os.sysconf("SC_CLK_TCK")
print(f"{r['rps']:,.0f} echoes/s; server CPU per echo: {((u1-u0)+(s1-s0))/hz/echoes*1e6:.2f} us "
      f"(user {(u1-u0)/hz/echoes*1e6:.2f}, system {(s1-s0)/hz/echoes*1e6:.2f}); "
      f"client at {r['client_cpu']:.0%} of a CPU")
PY
