#!/bin/bash
# How many calls each side handles per wake-up in the Plus benchmark, server and client apart:
# calls / voluntary context switches of the loop's thread (/proc/PID/status: each one is a sleep
# in epoll_wait with nothing to do).  Noise on a shared machine moves calls/s a lot but hardly
# moves this ratio, and it shows whether the two sides work at once: when each wake-up carries
# all N callers' calls, each side sleeps while the other handles the whole batch (they take
# turns); when both rarely sleep, both are busy at the same time.
# usage: bench/rpc_batches.sh CALLERS SECONDS   (SECONDS >= 3)
set -u
cd "$(dirname "$0")/.."
OUT=$(mktemp)
PORT=$((20000 + RANDOM % 20000)); PORT2=$((40000 + RANDOM % 20000))
NS=tcp://127.0.0.1:$PORT
taskset -c 0 .venv/bin/python -m namewire nameservice --listen $NS --log-level WARNING & NSP=$!
sleep 0.7
taskset -c 0 .venv/bin/python -m namewire run examples/plus_server.py --nameservice $NS \
    --listen tcp://127.0.0.1:$PORT2 --no-unix --log-level WARNING & SV=$!
trap 'kill $SV $NSP 2>/dev/null; rm -f "$OUT"' EXIT
sleep 1.5
io() { awk '/^voluntary_ctxt_switches/ {printf "%s ", $2}' /proc/$1/status; }
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
taskset -c 1 .venv/bin/python bench/clients/namewire_plus.py --nameservice $NS --callers $1 \
    --seconds $2 --warmup 1 > "$OUT" & CL=$!
sleep 2
read -r sr0 < <(io $SV); read -r cr0 < <(io $CL); s0=$(ticks $SV); c0=$(ticks $CL); t0=$(date +%s.%N)
sleep $(( $2 - 2 ))
read -r sr1 < <(io $SV); read -r cr1 < <(io $CL); s1=$(ticks $SV); c1=$(ticks $CL); t1=$(date +%s.%N)
wait $CL
python3 - "$OUT" $sr0 $cr0 $sr1 $cr1 $s0 $s1 $c0 $c1 $t0 $t1 <<'PY'
import json, os, sys
out, *v = sys.argv[1:]
sr0, cr0, sr1, cr1, s0, s1, c0, c1 = map(int, v[:8])
t0, t1 = map(float, v[8:])
r = json.loads(next(l for l in open(out) if l.startswith("RESULT "))[7:])
calls = r["calls_per_s"] * (t1 - t0)
hz = os.sysconf("SC_CLK_TCK")
print(f"{r['calls_per_s']:,.0f} calls/s at {r['callers']} callers; "
      f"server: {calls / max(sr1 - sr0, 1):.1f} calls per wake-up ({(sr1 - sr0) / (t1 - t0):,.0f} sleeps/s), "
      f"CPU {(s1 - s0) / hz / (t1 - t0):.0%}; "
      f"client: {calls / max(cr1 - cr0, 1):.1f} calls per wake-up ({(cr1 - cr0) / (t1 - t0):,.0f} sleeps/s), "
      f"CPU {(c1 - c0) / hz / (t1 - t0):.0%}")
PY
